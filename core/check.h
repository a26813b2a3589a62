// Error checking: every failure is an exception carrying the expression, file:line and the
// library's own message, so `main` can print it once and abort all MPI ranks.
#pragma once

#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>

namespace rn {

// The one exception type of the project. `what()` is a single line meant for the user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] inline void throw_error(const std::string& msg, const char* expr, const char* file,
                                     int line) {
  std::ostringstream os;
  os << msg << " (" << expr << " at " << file << ":" << line << ")";
  throw Error(os.str());
}
}  // namespace detail

// Formats its arguments with operator<< into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace rn

// A user-facing precondition: `msg` is streamed, e.g. RN_CHECK(n > 0, "[conv] batch " << n).
#define RN_CHECK(cond, msg)                                                     \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::ostringstream rn_check_os_;                                          \
      rn_check_os_ << msg;                                                      \
      ::rn::detail::throw_error(rn_check_os_.str(), #cond, __FILE__, __LINE__); \
    }                                                                           \
  } while (0)

// Throws an input error whose message stands alone (no file:line): for bad configs, flags and
// data files the user must fix, where the source location would only be noise.
#define RN_FAIL(msg)                      \
  do {                                    \
    std::ostringstream rn_fail_os_;       \
    rn_fail_os_ << msg;                   \
    throw ::rn::Error(rn_fail_os_.str()); \
  } while (0)

// An MPI call that must return MPI_SUCCESS; the message is MPI_Error_string's. Expands only where
// <mpi.h> is included (the distributed library), so core itself stays free of MPI.
#define RN_MPI_CHECK(expr)                                                                     \
  do {                                                                                         \
    int rn_mpi_rc_ = (expr);                                                                   \
    if (rn_mpi_rc_ != MPI_SUCCESS) {                                                           \
      char rn_mpi_msg_[MPI_MAX_ERROR_STRING];                                                  \
      int rn_mpi_len_ = 0;                                                                     \
      MPI_Error_string(rn_mpi_rc_, rn_mpi_msg_, &rn_mpi_len_);                                 \
      ::rn::detail::throw_error(std::string("[mpi] ") + std::string(rn_mpi_msg_, rn_mpi_len_), \
                                #expr, __FILE__, __LINE__);                                    \
    }                                                                                          \
  } while (0)

// CUDA, cuDNN, cuBLAS and NCCL calls that must succeed; the message is the library's own
// (cudaGetErrorString, cudnnGetErrorString, cublasGetStatusString, ncclGetErrorString). Like
// RN_MPI_CHECK they expand only where the library's header is included (the CUDA backend and
// the NCCL communicator), so a CPU-only build never sees them.
#define RN_CUDA_CHECK(expr)                                                                   \
  do {                                                                                        \
    cudaError_t rn_cuda_rc_ = (expr);                                                         \
    if (rn_cuda_rc_ != cudaSuccess)                                                           \
      ::rn::detail::throw_error(::rn::str_cat("[cuda] ", cudaGetErrorName(rn_cuda_rc_), ": ", \
                                              cudaGetErrorString(rn_cuda_rc_)),               \
                                #expr, __FILE__, __LINE__);                                   \
  } while (0)

#define RN_CUDNN_CHECK(expr)                                                                  \
  do {                                                                                        \
    cudnnStatus_t rn_cudnn_rc_ = (expr);                                                      \
    if (rn_cudnn_rc_ != CUDNN_STATUS_SUCCESS)                                                 \
      ::rn::detail::throw_error(::rn::str_cat("[cudnn] ", cudnnGetErrorString(rn_cudnn_rc_)), \
                                #expr, __FILE__, __LINE__);                                   \
  } while (0)

#define RN_CUBLAS_CHECK(expr)                                                                     \
  do {                                                                                            \
    cublasStatus_t rn_cublas_rc_ = (expr);                                                        \
    if (rn_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                                   \
      ::rn::detail::throw_error(::rn::str_cat("[cublas] ", cublasGetStatusString(rn_cublas_rc_)), \
                                #expr, __FILE__, __LINE__);                                       \
  } while (0)

#define RN_NCCL_CHECK(expr)                                                                       \
  do {                                                                                            \
    ncclResult_t rn_nccl_rc_ = (expr);                                                            \
    if (rn_nccl_rc_ != ncclSuccess)                                                               \
      ::rn::detail::throw_error(::rn::str_cat("[nccl] ", ncclGetErrorString(rn_nccl_rc_)), #expr, \
                                __FILE__, __LINE__);                                              \
  } while (0)

// For destructors, which must not throw: prints the failure to stderr and carries on.
#define RN_CUDA_CHECK_PRINT(expr)                                                               \
  do {                                                                                          \
    cudaError_t rn_cuda_rc_ = (expr);                                                           \
    if (rn_cuda_rc_ != cudaSuccess)                                                             \
      std::fprintf(stderr, "[cuda] %s (%s at %s:%d)\n", cudaGetErrorString(rn_cuda_rc_), #expr, \
                   __FILE__, __LINE__);                                                         \
  } while (0)

// An HDF5 call that must not return a negative value; evaluates to the call's result (an id or
// a status), and the message is the HDF5 error stack's descriptions, innermost last. Expands only
// where <hdf5.h> is included (the io library), so core itself stays free of HDF5.
#define RN_HDF5_CHECK(expr)                                                                     \
  ([&]() {                                                                                      \
    const auto rn_h5_rc_ = (expr);                                                              \
    if (rn_h5_rc_ < 0) {                                                                        \
      std::string rn_h5_msg_;                                                                   \
      H5Ewalk2(                                                                                 \
          H5E_DEFAULT, H5E_WALK_DOWNWARD,                                                       \
          [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {                            \
            auto& s = *static_cast<std::string*>(out);                                          \
            std::string d = e->desc ? e->desc : "";                                             \
            for (auto& c : d)                                                                   \
              if (c == '\n') c = ' ';                                                           \
            /* each layer of the stack tends to repeat the one below: keep each text once */    \
            if (!d.empty() && s.find(d) == std::string::npos) s += (s.empty() ? "" : "; ") + d; \
            return 0;                                                                           \
          },                                                                                    \
          &rn_h5_msg_);                                                                         \
      H5Eclear2(H5E_DEFAULT);                                                                   \
      ::rn::detail::throw_error("[hdf5] " + (rn_h5_msg_.empty() ? "call failed" : rn_h5_msg_),  \
                                #expr, __FILE__, __LINE__);                                     \
    }                                                                                           \
    return rn_h5_rc_;                                                                           \
  }())
