// placeholder: protocol micro-benchmarks
#include <benchmark/benchmark.h>
