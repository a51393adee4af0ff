// placeholder: implemented with topology.cc
#include <gtest/gtest.h>
