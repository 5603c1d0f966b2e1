// UnCLIPModels
