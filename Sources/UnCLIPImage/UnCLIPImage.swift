// UnCLIPImage
