/* Paged decode attention on a CPU core: what attention/cpu_sdpa.py's decode groups compute, read
 * straight from the paged cache (no gather, no padding), with an online softmax.
 *
 * Each decode sequence reads its context once, CHUNK positions at a time (block sizes are powers
 * of two >= 16, so a chunk never straddles two blocks); for every KV head h and each of its GROUP
 * query heads j:
 *
 *     s[t]   = scale * q[row, h*GROUP + j] . K[slot(t), h]                  t in the chunk
 *     m'     = max(m, max_t s[t]);   r = exp(m - m')
 *     l      = l * r + sum_t exp(s[t] - m')
 *     acc    = acc * r + sum_t exp(s[t] - m') * V[slot(t), h]
 *     out[row, h*GROUP + j] = acc / l                                       after the last chunk
 *
 * Layouts (float32, contiguous): q and out [tokens, kv_heads * GROUP, DIM]; k_cache and v_cache
 * one layer's [num_blocks, block_size, kv_heads, DIM]; block_tables int32 [num_seqs, width];
 * seq_lens int32 [num_seqs]; rows int64 [num_seqs] (each sequence's row of q and out).
 * Sequences [first, last) are computed, so callers can split the work between threads.
 *
 * DIM and GROUP are compile-time constants (-DDIM=64 -DGROUP=2: attention/cpu_native.py builds
 * one library per shape), so the loops over them unroll and vectorize; see cpu_native.py's FLAGS
 * for the floating-point options (sums may be reassociated; infinities and NaN keep their meaning).
 */
#include <math.h>
#include <stdint.h>

/* glibc's vector expf (libmvec), so the exp of a chunk's scores vectorizes */
float expf(float) __attribute__((simd("notinbranch")));

#define CHUNK 16
#define MAX_HEADS 128 /* query heads (of this rank) */

static inline float dot(const float *a, const float *b)
{
    float s = 0.0f;
    for (int d = 0; d < DIM; d++) s += a[d] * b[d];
    return s;
}

static void attend_sequence(const float *q, const float *k_cache, const float *v_cache,
                            const int32_t *table, int64_t seq_len, int64_t kv_heads,
                            int64_t block_size, float scale, float *out)
{
    const int64_t pos_stride = kv_heads * DIM, heads = kv_heads * GROUP;
    float acc[MAX_HEADS][DIM], m[MAX_HEADS], l[MAX_HEADS], p[MAX_HEADS][CHUNK];
    for (int64_t i = 0; i < heads; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        for (int d = 0; d < DIM; d++) acc[i][d] = 0.0f;
    }
    for (int64_t start = 0; start < seq_len; start += CHUNK) {
        const int64_t n = seq_len - start < CHUNK ? seq_len - start : CHUNK;
        const int64_t slot = (int64_t)table[start / block_size] * block_size + start % block_size;
        const float *k = k_cache + slot * pos_stride, *v = v_cache + slot * pos_stride;
        for (int64_t t = 0; t < n; t++)  /* scores: each position's row of all heads, once */
            for (int64_t i = 0; i < heads; i++)
                p[i][t] = scale * dot(q + i * DIM, k + t * pos_stride + (i / GROUP) * DIM);
        for (int64_t i = 0; i < heads; i++) {  /* the online softmax's update */
            float top = m[i];
            for (int64_t t = 0; t < n; t++) top = p[i][t] > top ? p[i][t] : top;
            const float shrink = m[i] == -INFINITY ? 0.0f : expf(m[i] - top);
            float sum = 0.0f;
            for (int64_t t = 0; t < n; t++) {
                p[i][t] = expf(p[i][t] - top);
                sum += p[i][t];
            }
            l[i] = l[i] * shrink + sum;
            m[i] = top;
            for (int d = 0; d < DIM; d++) acc[i][d] *= shrink;
        }
        for (int64_t t = 0; t < n; t++)  /* the values, each row once */
            for (int64_t i = 0; i < heads; i++) {
                const float *vt = v + t * pos_stride + (i / GROUP) * DIM;
                for (int d = 0; d < DIM; d++) acc[i][d] += p[i][t] * vt[d];
            }
    }
    for (int64_t i = 0; i < heads; i++)
        for (int d = 0; d < DIM; d++) out[i * DIM + d] = acc[i][d] / l[i];
}

int paged_decode(const float *q, const float *k_cache, const float *v_cache,
                 const int32_t *block_tables, int64_t table_width, const int32_t *seq_lens,
                 const int64_t *rows, int64_t first, int64_t last, int64_t kv_heads,
                 int64_t block_size, float scale, float *out)
{
    if (kv_heads * GROUP > MAX_HEADS || block_size % CHUNK) return 1;
    const int64_t row_stride = kv_heads * GROUP * DIM;
    for (int64_t b = first; b < last; b++)
        attend_sequence(q + rows[b] * row_stride, k_cache, v_cache,
                        block_tables + b * table_width, seq_lens[b], kv_heads, block_size, scale,
                        out + rows[b] * row_stride);
    return 0;
}
