#include "kernels/cuda/common.cuh"
thread_local dim3 blockIdx, threadIdx, blockDim, gridDim;
