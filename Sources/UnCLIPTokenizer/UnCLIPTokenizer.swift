// UnCLIPTokenizer
