// placeholder: implemented with request_parser.cc
#include <gtest/gtest.h>
