#include <stdio.h>
#include <stddef.h>
#include <jpeglib.h>
#include "unclip_jpeg.h"
