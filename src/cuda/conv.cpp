// PLACEHOLDER: being written; every function throws until then.
#include "backend/backend.h"

namespace kiln::cuda {

void conv2d_forward(const Tensor& x, const Tensor& w, const Conv2dParams& p, Tensor& y) { KILN_FAIL("conv2d_forward: not implemented yet"); }
void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Conv2dParams& p, Tensor& dx) { KILN_FAIL("conv2d_backward_data: not implemented yet"); }
void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Conv2dParams& p, Tensor& dw) { KILN_FAIL("conv2d_backward_filter: not implemented yet"); }

}  // namespace kiln::cuda
