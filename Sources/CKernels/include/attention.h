// Fused multi-head attention (flash-attention style): a block of queries meets the keys in blocks of
// UC_ATTENTION_KEY_BLOCK with an online softmax (running max and sum), so no Tq×Tk score matrix is
// ever written. Threading is the caller's: each call handles one head and a range of query rows.
#pragma once
#include <stddef.h>

/// Keys per block of the packed layout.
#define UC_ATTENTION_KEY_BLOCK 64

/// Best kernel for head size `d` on this CPU: 2 = AVX-512, 1 = AVX2, 0 = none (use the sgemm path).
int uc_attention_best_isa(long d);

/// Floats in one head's packed keys: ceil(tk / 64) blocks of d×64, zero padded.
long uc_attention_packed_keys_count(long tk, long d);

/// Packs one head's keys (tk rows of d floats, row stride ldk) transposed per block and multiplied
/// by scale·log2(e), so scores come out in the base-2 domain the kernel exponentiates in.
void uc_attention_pack_keys(const float *k, long ldk, long tk, long d, float scale, float *packed);

/// Attention of query rows [row0, row0 + rows) of one head.
/// q, v and o point at row 0 of the head (row strides ldq, ldv, ldo); packed from uc_attention_pack_keys.
/// key_bias: NULL or tk additive values (0 keeps a key, -INFINITY hides it). causal hides keys j > i.
/// Rows that see no key at all get zeros. isa: a value returned by uc_attention_best_isa (1 or 2).
void uc_attention_rows(int isa, const float *q, long ldq, const float *packed, const float *v, long ldv,
                       const float *key_bias, long tk, long d, long row0, long rows, int causal,
                       float *o, long ldo);
