// placeholder: implemented with command_table.cc
#include <gtest/gtest.h>
