// UnCLIPWeights
