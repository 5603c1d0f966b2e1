// UnCLIPTensor
