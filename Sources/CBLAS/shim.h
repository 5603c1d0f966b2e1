#include <cblas.h>
// openblas_set_num_threads lives in OpenBLAS's own header, not the generic cblas.h.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
