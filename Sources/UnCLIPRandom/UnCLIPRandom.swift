// UnCLIPRandom
