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

// bf16 variant (attention_bf16.c): Q·Kᵀ and P·V with AVX512_BF16 dot products, fp32 accumulation and softmax.
#include <stdint.h>

/// 1 when the bf16 kernel runs here for head size `d` (AVX512_BF16 and d a multiple of 16).
int uc_attention_bf16_supported(long d);
/// uint16 elements of one head's packed keys / values.
long uc_attention_bf16_keys_count(long tk, long d);
long uc_attention_bf16_values_count(long tk, long d);
/// Packs one head's keys, multiplied by scale·log2(e) and rounded to bf16, as [d/2][64][2] per key block.
void uc_attention_bf16_pack_keys(const float *k, long ldk, long tk, long d, float scale, uint16_t *packed);
/// Packs one head's values rounded to bf16 as [key pairs][d][2].
void uc_attention_bf16_pack_values(const float *v, long ldv, long tk, long d, uint16_t *packed);
/// As uc_attention_rows, with the packed bf16 keys and values.
void uc_attention_bf16_rows(const float *q, long ldq, const uint16_t *packed_keys, const uint16_t *packed_values,
                            const float *key_bias, long tk, long d, long row0, long rows, int causal, float *o, long ldo);
