// placeholder: implemented with slot.cc
#include <gtest/gtest.h>
