#include <png.h>
#include "unclip_png.h"
