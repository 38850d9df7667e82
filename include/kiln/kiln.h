// kiln/kiln.h — everything a program needs to build and train models with kiln.
#pragma once

#include "kiln/autograd.h"
#include "kiln/cuda.h"
#include "kiln/device.h"
#include "kiln/dtype.h"
#include "kiln/error.h"
#include "kiln/io.h"
#include "kiln/loader.h"
#include "kiln/models.h"
#include "kiln/nn.h"
#include "kiln/ops.h"
#include "kiln/optim.h"
#include "kiln/parameter_store.h"
#include "kiln/random.h"
#include "kiln/tensor.h"
