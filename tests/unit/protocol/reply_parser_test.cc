// placeholder: implemented with reply_parser.cc
#include <gtest/gtest.h>
