// placeholder: implemented with errors.cc
#include <gtest/gtest.h>
