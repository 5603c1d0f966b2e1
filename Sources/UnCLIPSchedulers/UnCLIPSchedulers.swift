// UnCLIPSchedulers
