// Shape, DType, Device and Tensor: an owning, reference-counted buffer with a logical shape and
// an optional backend layout (oneDNN's blocked formats on CPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace rn {

enum class DType : uint8_t { f32, bf16, f16, i32 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

enum class DeviceKind : uint8_t { cpu, cuda };
struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
};
std::string device_name(Device d);

// Logical dimensions, outermost first (N, C, H, W for activations; O, I/groups, KH, KW for
// convolution weights, as PyTorch).
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}
  size_t rank() const { return dims_.size(); }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  const std::vector<int64_t>& dims() const { return dims_; }
  int64_t numel() const;
  std::string str() const;  // "16x3x224x224"
  bool operator==(const Shape&) const = default;

 private:
  std::vector<int64_t> dims_;
};

// How a backend lays out a tensor's elements. A null layout is the plain row-major layout of
// the shape; backends subclass this for their own formats (blocked, NHWC, ...).
class Layout {
 public:
  virtual ~Layout() = default;
  virtual size_t bytes() const = 0;  // may exceed numel * dtype size (padded blocks)
  virtual bool equals(const Layout& other) const = 0;
  virtual std::string str() const = 0;
};
using LayoutPtr = std::shared_ptr<const Layout>;

// Shape + element type + layout: everything needed to allocate a tensor.
struct TensorDesc {
  Shape shape;
  DType dtype = DType::f32;
  LayoutPtr layout;  // null = plain
  size_t bytes() const;
  bool same_layout(const TensorDesc& other) const;
  std::string str() const;
};

// Where a buffer's memory comes from; lets backends recycle buffers so that a training step
// allocates nothing once the shapes are known.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr, size_t bytes) noexcept = 0;
};
// The default host allocator: 64-byte aligned, stateless.
Allocator& host_allocator();

class Storage {
 public:
  Storage(Allocator& alloc, size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Allocator& alloc_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(TensorDesc desc, std::shared_ptr<Storage> storage);
  // A plain, host, zero-initialised tensor.
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);

  bool defined() const { return storage_ != nullptr; }
  const TensorDesc& desc() const { return desc_; }
  const Shape& shape() const { return desc_.shape; }
  DType dtype() const { return desc_.dtype; }
  const LayoutPtr& layout() const { return desc_.layout; }
  bool is_plain() const { return desc_.layout == nullptr; }
  Device device() const { return storage_ ? storage_->device() : Device{}; }
  int64_t numel() const { return desc_.shape.numel(); }
  size_t bytes() const { return desc_.bytes(); }
  void* data() const { return storage_ ? storage_->data() : nullptr; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data());
  }
  // Same buffer, another shape of the same plain size (e.g. N x C x 1 x 1 viewed as N x C).
  Tensor view(const Shape& shape) const;
  // Host copy of a plain f32 tensor's values.
  std::vector<float> to_vector() const;

 private:
  TensorDesc desc_;
  std::shared_ptr<Storage> storage_;
};

}  // namespace rn
