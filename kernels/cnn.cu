// PLACEHOLDER: being written; every function throws until then.
#include "backend/backend.h"

namespace kiln::cuda {

void max_pool2d_forward(const Tensor& x, const Pool2dParams& p, Tensor& y, Tensor& argmax) { KILN_FAIL("max_pool2d_forward: not implemented yet"); }
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx) { KILN_FAIL("max_pool2d_backward: not implemented yet"); }
void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y) { KILN_FAIL("adaptive_avg_pool2d_forward: not implemented yet"); }
void adaptive_avg_pool2d_backward(const Tensor& dy, Tensor& dx) { KILN_FAIL("adaptive_avg_pool2d_backward: not implemented yet"); }
void lrn_forward(const Tensor& x, std::int64_t size, float alpha, float beta, float k, Tensor& y, Tensor& scale) { KILN_FAIL("lrn_forward: not implemented yet"); }
void lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, std::int64_t size, float alpha, float beta, float k, Tensor& dx) { KILN_FAIL("lrn_backward: not implemented yet"); }
void dropout_forward(const Tensor& x, float p, std::uint64_t seed, std::uint64_t offset, Tensor& y) { KILN_FAIL("dropout_forward: not implemented yet"); }
void dropout_backward(const Tensor& dy, float p, std::uint64_t seed, std::uint64_t offset, Tensor& dx) { KILN_FAIL("dropout_backward: not implemented yet"); }
void resize_bilinear(const Tensor& x, Tensor& y) { KILN_FAIL("resize_bilinear: not implemented yet"); }

}  // namespace kiln::cuda
