// Tensor, Shape and the default host allocator.
#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/check.h"

namespace rn {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::bf16:
      return 2;
    case DType::f16:
      return 2;
    case DType::i32:
      return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
    case DType::i32:
      return "i32";
  }
  return "?";
}

std::string device_name(Device d) {
  return d.kind == DeviceKind::cpu ? "cpu" : str_cat("cuda:", d.index);
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

std::string Shape::str() const {
  std::ostringstream os;
  for (size_t i = 0; i < dims_.size(); ++i) os << (i ? "x" : "") << dims_[i];
  return os.str();
}

size_t TensorDesc::bytes() const {
  return layout ? layout->bytes() : static_cast<size_t>(shape.numel()) * dtype_size(dtype);
}

bool TensorDesc::same_layout(const TensorDesc& o) const {
  if (!(shape == o.shape) || dtype != o.dtype) return false;
  if (!layout || !o.layout) return !layout && !o.layout;
  return layout->equals(*o.layout);
}

std::string TensorDesc::str() const {
  return str_cat(shape.str(), " ", dtype_name(dtype), " ", layout ? layout->str() : "plain");
}

namespace {
class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    // aligned_alloc wants a multiple of the alignment.
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded ? rounded : 64);
    RN_CHECK(p != nullptr, "out of host memory allocating " << bytes << " bytes");
    return p;
  }
  void release(void* ptr, size_t) noexcept override { std::free(ptr); }
};
}  // namespace

Allocator& host_allocator() {
  static HostAllocator alloc;  // stateless
  return alloc;
}

Storage::Storage(Allocator& alloc, size_t bytes, Device device)
    : alloc_(alloc), bytes_(bytes), device_(device) {
  ptr_ = alloc_.allocate(bytes);
}

Storage::~Storage() {
  alloc_.release(ptr_, bytes_);
}

Tensor::Tensor(TensorDesc desc, std::shared_ptr<Storage> storage)
    : desc_(std::move(desc)), storage_(std::move(storage)) {
  RN_CHECK(!storage_ || storage_->bytes() >= desc_.bytes(),
           "[tensor] storage of " << storage_->bytes() << " bytes too small for " << desc_.str());
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  TensorDesc d{shape, dtype, nullptr};
  auto s = std::make_shared<Storage>(host_allocator(), d.bytes(), Device{});
  std::memset(s->data(), 0, d.bytes());
  return Tensor(d, std::move(s));
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  RN_CHECK(static_cast<int64_t>(values.size()) == shape.numel(),
           "[tensor] " << values.size() << " values for shape " << shape.str());
  Tensor t = zeros(shape);
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::view(const Shape& shape) const {
  RN_CHECK(is_plain() && shape.numel() == numel(),
           "[tensor] cannot view " << desc_.str() << " as " << shape.str());
  return Tensor(TensorDesc{shape, desc_.dtype, nullptr}, storage_);
}

std::vector<float> Tensor::to_vector() const {
  RN_CHECK(is_plain() && dtype() == DType::f32 && device().kind == DeviceKind::cpu,
           "[tensor] to_vector needs a plain f32 host tensor, got " << desc_.str());
  const float* p = data_as<float>();
  return std::vector<float>(p, p + numel());
}

}  // namespace rn
