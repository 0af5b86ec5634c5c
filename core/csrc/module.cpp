// Python bindings of the fused backend's C++ CPU loops (built by sparsernn/core/native.py).
#include "fused_cpu.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_group_forward", &sparsernn::gru_group_forward);
  m.def("lstm_group_forward", &sparsernn::lstm_group_forward);
  m.def("weight_grads", &sparsernn::weight_grads);
  m.def("single_state_backward", &sparsernn::single_state_backward);
  m.def("gru_cell_backward", &sparsernn::gru_cell_backward);
  m.def("lstm_cell_backward", &sparsernn::lstm_cell_backward);
  m.def("routed_forward", &sparsernn::routed_forward);
  m.def("routed_backward", &sparsernn::routed_backward);
  m.def("routed_weight_grads", &sparsernn::routed_weight_grads);
  m.def("selective_forward", &sparsernn::selective_forward);
  m.def("selective_backward", &sparsernn::selective_backward);
  m.def("rhythm_schedule", &sparsernn::rhythm_schedule);
  m.def("rhythm_schedule_backward", &sparsernn::rhythm_schedule_backward);
}
