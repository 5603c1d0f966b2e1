#include <webp/decode.h>
#include <webp/demux.h>
#include "unclip_webp.h"
