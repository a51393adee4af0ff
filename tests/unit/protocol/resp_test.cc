// placeholder: implemented with resp.cc
#include <gtest/gtest.h>
