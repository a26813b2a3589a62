// RN_HOST_DEVICE: a function compiled for the host and, in CUDA sources, for the device too, so
// that the same arithmetic runs in the kernels and in tests on machines without a GPU.
#pragma once

#if defined(__CUDACC__)
#define RN_HOST_DEVICE __host__ __device__
#else
#define RN_HOST_DEVICE
#endif
