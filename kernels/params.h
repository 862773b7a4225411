/*
 * Kernel parameter layouts: the one source of truth shared by the CUDA kernels and the Rust
 * launch code. Plain C (stdint types, no CUDA headers) so that bindgen can read it;
 * src/params.rs is generated from this file by scripts/gen_params.sh and a test
 * (tests/params_layout.rs) fails when the two drift apart.
 *
 * Every struct is passed to its kernel by value. Pointers are device addresses (host
 * addresses under the CPU emulator). Strides and lengths count elements, not bytes.
 */
#ifndef SPHEREKIT_PARAMS_H
#define SPHEREKIT_PARAMS_H

#include <stdint.h>

/* ---- eps conventions of a row normalization r = 1 / norm(x) ---------------------------- */
#define SK_EPS_NONE 0u   /* r = 1 / ||x||                                    */
#define SK_EPS_CLAMP 1u  /* r = 1 / max(||x||, eps)   (torch F.normalize)   */
#define SK_EPS_ADD 2u    /* r = 1 / (||x|| + eps)                            */
#define SK_EPS_INSIDE 3u /* r = (sum x^2 + eps)^(-1/2)                       */

/* ---- launch geometry shared by host and device ------------------------------------------ */
/* Teams of up to 32 threads (one team per row segment) are packed into blocks of this many
 * threads. Teams of more than 32 threads are one block each. */
#define SK_SUBWARP_BLOCK_THREADS 128u
/* Threads of the streaming tier (rows too long to keep in registers). Its kernels make several
 * passes over a segment; the first `stage` elements of each input are copied to dynamic shared
 * memory on the first pass (input i at byte offset i * stage * sizeof(T)) and read from there
 * afterwards, the rest is re-read from global memory. Each thread reads back only what it wrote,
 * so no barrier is needed. */
#define SK_STREAM_THREADS 256u
/* Streaming blocks resident per SM, per op: the passes of one row (reductions, barriers) then
 * overlap the loads of the others. It sets both the kernels' register budget (65536 / (threads *
 * blocks)) and each block's share of the SM's shared memory for staging (the host divides by
 * it). One block per SM left the memory system idle during every reduction. */
#define SK_STREAM_BLOCKS_NORM_FWD 4u
#define SK_STREAM_BLOCKS_NORM_BWD 3u
#define SK_STREAM_BLOCKS_LERP_FWD 3u
#define SK_STREAM_BLOCKS_LERP_BWD 2u
/* Elements each thread keeps in registers, per op, in the register-resident tiers. */
#define SK_NORM_FWD_ELEMS 32u
#define SK_NORM_BWD_ELEMS 16u
#define SK_LERP_FWD_ELEMS 16u
#define SK_LERP_BWD_ELEMS 8u

/* lerp_normalize flags */
#define SK_LERP_RENORM_H 1u  /* a = N(h) instead of a = h             */
#define SK_LERP_ABS_ALPHA 2u /* alpha = |c p| instead of alpha = c p   */

/* Row normalization, forward and backward.
 * The rows are split into segments of `group` consecutive channels (group == cols when the
 * whole row is normalized); segment s covers row s / (cols / group), channels
 * (s % (cols / group)) * group .. + group. */
typedef struct sk_normalize_params {
    const void *x;     /* [rows, x_stride] input rows                                    */
    const void *dy;    /* backward: [rows, dy_stride] upstream gradient; forward: NULL      */
    const void *scale; /* [cols] per-channel scale s, or NULL for s = 1                    */
    void *out;         /* forward: y = s * N(x); backward: dx                              */
    double *partial;   /* backward with dscale: [workers, group] partial column sums (register
                          tiers), or the dscale column pass's [chunks, cols] sums; else NULL */
    double *row_coef;  /* backward, streaming tier with dscale: [rows, cols / group,
                          SK_NORM_COEFS] (r, 1 if the segment was computed in f64) of each
                          segment, written by the row pass for the dscale column pass; else NULL */
    uint64_t rows;
    uint64_t x_stride;
    uint64_t dy_stride;
    uint64_t out_stride;
    uint32_t cols;
    uint32_t group;
    uint32_t eps_mode; /* SK_EPS_* */
    float eps;
    uint32_t stage;    /* streaming tier: leading elements of each input staged in shared memory */
    uint32_t chunk_rows; /* dscale column pass: rows per chunk; else 0                     */
} sk_normalize_params;

/* Normalize-lerp-normalize: y = N(a + alpha (N(u) - a)), a = N(h) or h, alpha = c p or |c p|,
 * p a vector of `cols` entries or one scalar (p_len == 1). */
typedef struct sk_lerp_params {
    const void *h;     /* [rows, h_stride]                                                */
    const void *u;     /* [rows, u_stride]                                                */
    const void *dy;    /* backward: [rows, dy_stride]; forward: NULL                      */
    const void *p;     /* [p_len]                                                         */
    void *out;         /* forward: y; backward: dh                                        */
    void *out_u;       /* backward: du; forward: NULL                                     */
    double *partial;   /* backward with dp: [workers, p_len] partial sums (register tiers, or
                          a scalar p), or the dp column pass's [chunks, cols] sums; else NULL */
    double *row_coef;  /* backward, streaming tier with dp per channel: [rows, SK_LERP_COEFS]
                          (r_h, r_u, r_z, c_z, 1 if the row was computed in f64) of each row,
                          written by the row pass for the dp column pass; else NULL         */
    uint64_t rows;
    uint64_t h_stride;
    uint64_t u_stride;
    uint64_t dy_stride;
    uint64_t out_stride;
    uint64_t out_u_stride;
    uint32_t cols;
    uint32_t p_len;    /* cols or 1                                                       */
    uint32_t eps_mode; /* SK_EPS_*, used by all three normalizations                      */
    float eps;
    float c;
    uint32_t flags;    /* SK_LERP_*                                                       */
    uint32_t stage;    /* streaming tier: leading elements of each input staged in shared memory */
    uint32_t chunk_rows; /* dp column pass: rows per chunk; else 0                        */
} sk_lerp_params;

/* The column passes of the streaming tier's backward kernels (dscale of normalize, dp of lerp
 * with p per channel): one block per column slab (SK_COLUMN_PASS_THREADS * vector width
 * columns) and chunk of chunk_rows rows, chunk-major; each reads the per-row (per-segment)
 * coefficients the row pass wrote, SK_NORM_COEFS or SK_LERP_COEFS doubles each. */
#define SK_NORM_COEFS 2u
#define SK_LERP_COEFS 5u
#define SK_COLUMN_PASS_THREADS 256u

/* Deterministic column sums of backward partials, in two launches when the workers are many.
 * Channel ch = j * group + c sums partial[w * group + c] over the workers w = j + m *
 * groups_per_row, m = 0 .. workers / groups_per_row - 1, split into `slices` contiguous ranges
 * of m. Launch SK_COLSUM_SLICES (grid col_tiles * slices, col_tiles = ceil(channels / 32)):
 * each block sums one range for 32 channels, into out (slices == 1) or sums[slice * channels +
 * ch]. Launch SK_COLSUM_TOTAL (grid ceil(channels / 1024)): out[ch] = the slices' sums in order.
 * The order of every addition is fixed by (workers, slices): the same bits on every run. */
#define SK_COLSUM_SLICES 0u
#define SK_COLSUM_TOTAL 1u
typedef struct sk_colsum_params {
    const double *partial; /* [workers, group] */
    double *sums;          /* [slices, channels], or NULL when slices == 1 */
    void *out;             /* [channels] in the storage type */
    uint32_t workers;
    uint32_t group;
    uint32_t groups_per_row;
    uint32_t slices;
    uint32_t col_tiles;
    uint32_t step;         /* SK_COLSUM_SLICES or SK_COLSUM_TOTAL */
} sk_colsum_params;

/* In-place projection of weight matrices onto the unit sphere along rows or columns. */
#define SK_AXIS_ROWS 0u /* normalize every row (each output unit's weights in (out, in)) */
#define SK_AXIS_COLS 1u /* normalize every column                                       */
#define SK_PROJECT_MAX_MATRICES 112u
#define SK_PROJECT_THREADS 256u
#define SK_PROJECT_ROWS_PER_BLOCK 8u /* row axis: one warp per row               */
#define SK_PROJECT_COL_LANES 32u     /* column axis: 32 lanes of column vectors   */

typedef struct sk_project_matrix {
    void *w;
    uint32_t rows;
    uint32_t cols;
    uint32_t stride;
    uint32_t axis;        /* SK_AXIS_*                                        */
    uint32_t vectorized;  /* 1 when 16-byte accesses are aligned for this matrix */
    uint32_t block_start; /* first block of the launch that works on this matrix */
} sk_project_matrix;

typedef struct sk_project_params {
    sk_project_matrix m[SK_PROJECT_MAX_MATRICES];
    uint32_t count;
    uint32_t eps_mode;
    float eps;
    uint32_t total_blocks;
} sk_project_params;

/* Log-Bessel and von Mises-Fisher functions, element-wise: out[i] = f(order_i, x[i]). The codes
 * follow the order of spherekit::bessel::Function::ALL. */
#define SK_BESSEL_LOG_I 0u
#define SK_BESSEL_LOG_K 1u
#define SK_BESSEL_DLOG_I 2u
#define SK_BESSEL_DLOG_K 3u
#define SK_BESSEL_RATIO_I 4u
#define SK_BESSEL_ONE_MINUS_RATIO_I 5u
#define SK_BESSEL_VMF_LOG_NORMALIZER 6u
#define SK_BESSEL_VMF_MEAN_RESULTANT 7u
#define SK_BESSEL_VMF_ONE_MINUS_MEAN_RESULTANT 8u
#define SK_BESSEL_VMF_MEAN_RESULTANT_DERIVATIVE 9u
#define SK_BESSEL_VMF_KAPPA_MLE 10u
#define SK_BESSEL_THREADS 256u
/* Every function but the vMF kappa estimate evaluates each warp's batches of
 * SK_BESSEL_WARP_BATCH consecutive elements in the order of their region (a counting sort in
 * shared memory), so a warp's lanes take the same branch; their grid is sized in batches. */
#define SK_BESSEL_WARP_BATCH 256u

typedef struct sk_bessel_params {
    const void *orders; /* [n] orders (or dimensions d for the vMF functions), or NULL */
    const void *x;      /* [n] arguments                                               */
    void *out;          /* [n] results                                                 */
    double order;       /* the order of every element when `orders` is NULL            */
    uint64_t n;
} sk_bessel_params;

/* Gram iteration (spectral-norm bounds) on many matrices in one launch. Each item is a matrix
 * whose Gram matrix, of side k = its smaller side padded to a multiple of the tile side, stays
 * in shared memory for every step. Items with k <= SK_GRAM_WARP_K are served one per warp,
 * SK_GRAM_THREADS / 32 to a block; larger ones one per block. `order` lists the warp tier's
 * items first: block b < warp_blocks serves order[b * 8 + warp], block warp_blocks + j serves
 * order[warp_matrices + block_first + j]. Dense bounds serve the leading warp items of side
 * <= SK_GRAM_SMALL_K and the leading block items of side <= SK_GRAM_MID_K with kernels of their
 * own (sk_gram_dense_small_*: warps only, sk_gram_dense_mid_*: blocks only; fewer registers,
 * more blocks per SM), each launch getting `order` from its first item, the last one's
 * block_first skipping the block items the mid kernel served.
 * Buffers: k is padded to a multiple of SK_GRAM_WARP_TILE (warps) or SK_GRAM_BLOCK_TILE
 * (blocks) and a Gram row is that much longer than k_pad, so a warp's buffer holds
 * SK_GRAM_WARP_K * (SK_GRAM_WARP_K + SK_GRAM_WARP_TILE) elements; in sk_gram_dense_small_* the
 * padding is SK_GRAM_SMALL_PAD, a warp's buffer SK_GRAM_SMALL_K * (SK_GRAM_SMALL_K +
 * SK_GRAM_SMALL_PAD) elements.
 *
 * Dense items (sk_gram_matrix): matrix i is row-major rows x cols at element `offset` of `w`,
 * result to out[i]; the gradient kernels also write d upper / d W at the same offset of `grad`
 * (the matrices must not overlap), keeping a second Gram-sized buffer per team (the product
 * P = M_1 ... M_t): per warp 2 * SK_GRAM_WARP_K * (SK_GRAM_WARP_K + 2) elements, per block
 * block_capacity + k_pad * (k_pad + 4).
 * Convolution items (sk_gram_conv_item): the c_out x c_in block at frequency (u, v) of the 2-D
 * DFT of a kernel [c_out, c_in, taps, taps] at element `offset` of `w`, zero-padded to n x n;
 * result to the workspace slot out[i], then SK_GRAM_CONV_REDUCE (one warp per layer) takes the
 * max over a layer's frequencies into layer_out. */
#define SK_GRAM_THREADS 256u
#define SK_GRAM_WARP_K 32u
#define SK_GRAM_SMALL_K 16u        /* dense items of side <= this: sk_gram_dense_small_* */
#define SK_GRAM_MID_K 64u          /* dense block-tier items of side <= this: sk_gram_dense_mid_* */
#define SK_GRAM_MAX_K 128u         /* real, and complex f32 */
#define SK_GRAM_MAX_K_COMPLEX64 64u /* complex f64 */
#define SK_GRAM_MAX_K_GRAD64 64u    /* dense gradients in f64 arithmetic */
#define SK_GRAM_MAX_TAPS 16u
#define SK_GRAM_WARP_TILE 2u  /* tile side of the warp tier (k padded to a multiple)  */
#define SK_GRAM_BLOCK_TILE 4u /* tile side of the block tier                         */
#define SK_GRAM_SMALL_PAD 4u  /* sk_gram_dense_small_*: k padded to a multiple, rows this longer */
#define SK_GRAM_MAX_STEPS 61u /* iterations + 1 recorded per matrix                  */

/* Result flags */
#define SK_GRAM_CERTIFIED 1u /* upper is a rigorous bound despite rounding            */
#define SK_GRAM_CONVERGED 2u /* adaptive: upper / lower <= 1 + tolerance was reached  */

typedef struct sk_gram_matrix {
    uint64_t offset; /* elements from `w` to entry (0, 0)  */
    uint32_t rows;
    uint32_t cols;
} sk_gram_matrix;

typedef struct sk_gram_conv_item {
    uint64_t offset; /* elements from `w` to the layer's kernel            */
    uint32_t c_out;
    uint32_t c_in;
    uint32_t taps;   /* kernel side                                         */
    uint32_t n;      /* input side (circular padding, stride 1)             */
    uint32_t u;      /* frequency, 0 <= u < n                               */
    uint32_t v;      /* frequency, 0 <= v <= n / 2                          */
} sk_gram_conv_item;

typedef struct sk_gram_bound {
    double upper;        /* >= sigma_1 (Schatten-2^(T+1) norm)                           */
    double lower;        /* <= sigma_1 (Rayleigh quotient of the last Gram power, rooted) */
    uint32_t iterations; /* T actually run (convolutions: the most over frequencies)     */
    uint32_t flags;      /* SK_GRAM_*                                                    */
} sk_gram_bound;

#define SK_GRAM_CONV_ITEMS 0u  /* step: every frequency block of every layer */
#define SK_GRAM_CONV_REDUCE 1u /* step: per layer, the max over its blocks (and, when
                                  layer_argmax is set, the first block that has it) */
/* Convolution gradients (sk_gram_conv_grad_*): one team per layer (order: layer indices, warp
 * tier first) reruns its maximizing block layer_argmax[layer] keeping P = M_1 ... M_T, and
 * writes d upper / d kernel at the layer's offset of `grad`; its bound goes to out[layer]. */
#define SK_GRAM_MAX_K_CONV_GRAD 64u

/* The large tier (sk_gram_large_*): items whose Gram matrix does not fit on chip keep M_t in a
 * global workspace and run as a sequence of launches, each over all large items:
 *   SCAN   (SK_GRAM_LARGE_CHUNKS blocks per item) the largest |entry| and NaN flag, per chunk;
 *   FORM   (convolutions, as many blocks) the scaled c_out x c_in DFT block X into the workspace;
 *   GRAM t (one block per upper tile) M_t = M_{t-1}^2 2^(-2 e_{t-1}) (t = 1: X^H X), mirrored,
 *          with per-tile sums of |entries|^2 (whole, and per column);
 *   STATS t (one block per item) ||M_t||_F^2 and e_t; at t = 1 the trace; when a lower bound is
 *          needed (the last step, or every step when adaptive) the largest column and the
 *          Rayleigh quotient, and the adaptive test;
 *   FINISH (one block per item) the bounds, to out[index].
 * The products that read both operands from the workspace (GRAM for t >= 2 or for convolutions,
 * PGRAM) run in sk_gram_large_{dense,conv}_product_*, every other phase (dense GRAM t = 1 too)
 * in sk_gram_large_{dense,conv}_*; the kernels check the choice under the emulator.
 * Tiles are SK_GRAM_LARGE_TILE_WIDE wide for real f32 arithmetic, SK_GRAM_LARGE_TILE otherwise;
 * k_pad = k rounded up to the tile. `large` lists the items in ascending k; a call passes the
 * suffix it serves, and workspace offsets count from that suffix's first entry.
 * Per item, in doubles from `work`: SK_GRAM_LARGE_STATE_DOUBLES of state, 2 * SK_GRAM_LARGE_CHUNKS
 * scan partials, 2 * tiles Frobenius partials, nb * k_pad column partials (nb = k_pad / tile),
 * tiles Frobenius partials of P_t; in field elements from `work_elems`: two k_pad x k_pad
 * matrices, and for convolutions the l x k_pad block X; with gradients, from `work_grad`, two
 * more (P_t by parity). Convolution gradients rerun the phases from SCAN with `layer_argmax`
 * set: only each layer's maximizing block works. */
#define SK_GRAM_LARGE_SCAN 2u
#define SK_GRAM_LARGE_FORM 3u
#define SK_GRAM_LARGE_GRAM 4u
#define SK_GRAM_LARGE_STATS 5u
#define SK_GRAM_LARGE_FINISH 6u
#define SK_GRAM_LARGE_PGRAM 7u /* gradients, t >= 2: P_t = P_{t-1} M_t 2^-g (upper tiles) */
#define SK_GRAM_LARGE_GRADX 8u /* gradients, after FINISH: G = X P_T, l x k tiles      */
#define SK_GRAM_LARGE_TILE_WIDE 128u
#define SK_GRAM_LARGE_TILE 64u
#define SK_GRAM_LARGE_DEPTH 16u   /* rows of a panel per pass */
#define SK_GRAM_LARGE_CHUNKS 16u
#define SK_GRAM_LARGE_STATE_DOUBLES 128u

typedef struct sk_gram_large_item {
    uint64_t doubles;     /* offset of the item's f64 workspace, in doubles          */
    uint64_t elems;       /* offset of its matrices, in field elements               */
    uint64_t grad_elems;  /* gradients: offset of its P_t pair in work_grad (shared by
                             a convolution layer's blocks: only the maximizing one
                             uses it)                                              */
    uint32_t index;       /* the item (matrix or frequency block) it serves          */
    uint32_t first_tile;  /* GRAM blocks before it with SK_GRAM_LARGE_TILE tiles      */
    uint32_t first_wide;  /* the same with SK_GRAM_LARGE_TILE_WIDE tiles              */
    uint32_t first_grad;  /* GRADX blocks before it (l x k tiles), narrow tiles       */
    uint32_t first_grad_wide; /* the same, wide tiles                                 */
    uint32_t reserved;
} sk_gram_large_item;

typedef struct sk_gram_params {
    const void *w;            /* every matrix or kernel, in the storage type         */
    const void *items;        /* [count] sk_gram_matrix or sk_gram_conv_item         */
    const uint32_t *order;    /* [count] item indices, warp tier first               */
    sk_gram_bound *out;       /* [count], by item index                              */
    const uint32_t *layer_start; /* convolutions: [layers + 1] first item per layer  */
    sk_gram_bound *layer_out; /* convolutions: [layers]                             */
    void *grad;               /* dense gradients: d upper / d w, in w's layout, or NULL */
    double tolerance;         /* > 0: adaptive, stop once upper/lower <= 1+tol       */
    uint32_t count;
    uint32_t warp_matrices;
    uint32_t warp_blocks;
    uint32_t iterations;      /* T, or the most iterations when adaptive             */
    uint32_t certified;       /* 1: rigorous upper bound (f64 arithmetic kernels)    */
    uint32_t block_capacity;  /* block tier: shared-memory elements for the Gram      */
    uint32_t block_first;     /* block tier: its items served by an earlier launch     */
    uint32_t layers;          /* convolutions                                         */
    uint32_t step;            /* SK_GRAM_CONV_* (convolutions) or SK_GRAM_LARGE_*       */
    uint32_t t;               /* large tier: the GRAM or STATS step                   */
    uint32_t large_count;     /* large tier: entries of `large`                       */
    uint32_t reserved;        /* 0 (keeps the pointers below 8-byte aligned, no padding) */
    const sk_gram_large_item *large; /* large tier: the items served, ascending k     */
    double *work;             /* large tier: f64 workspace                            */
    void *work_elems;         /* large tier: Gram matrices (and convolution blocks)   */
    uint32_t *layer_argmax;   /* convolution gradients: [layers] maximizing block, or NULL */
    void *work_grad;          /* large tier, gradients: the P_t pairs, or NULL         */
} sk_gram_params;

/* Simplex random features: positive random features phi(x)_i = scale (exp(a_i - shift) + eps),
 * a_i = s w_i.x - c s^2 |x|^2, for rows x [rows, dim] (storage type, row stride x_stride) and
 * W [features, dim] f32 contiguous, written to out [rows, features] (row stride out_stride).
 * A block serves SK_RF_ROWS rows with SK_RF_THREADS threads, features in tiles of
 * SK_RF_FEATURE_TILE; in mode SK_RF_SHIFT_ROW the exponents of its rows stay in dynamic shared
 * memory (SK_RF_ROWS * features floats) when `fused` is 1, and are recomputed otherwise.
 * SK_RF_GROUP_SHIFT (one block per group of group_rows rows) replaces each row's shift by the
 * largest shift of its group, ignoring NaN. */
#define SK_RF_THREADS 256u
#define SK_RF_ROWS 32u
#define SK_RF_FEATURE_TILE 128u
#define SK_RF_DIM_CHUNK 16u
#define SK_RF_SHIFT_NONE 0u   /* shift = 0, written to `shift`                          */
#define SK_RF_SHIFT_ROW 1u    /* shift = the row's largest exponent, written to `shift` */
#define SK_RF_SHIFT_MAX_ONLY 2u /* write the row's largest exponent to `shift`, no features */
#define SK_RF_SHIFT_GIVEN 3u  /* read shift from `shift`                                 */
/* The tensor-core feature map (sk_rf_features_tc_{f16,bf16}, 16-bit x and features): blocks of
 * SK_RF_TC_THREADS serve tiles of SK_RF_TC_ROWS rows, features in passes of SK_RF_TC_PASS. Its
 * dynamic shared memory (sk_rf_tc_smem_bytes in src/simplex/gpu.rs) holds W_hi and W_lo as
 * [mp][kp + 8] 16-bit words (kp = d rounded up to 16; mp = m rounded up to 8 for one pass, else
 * whole passes), the x tile [SK_RF_TC_ROWS][kp + 8], and (2 + passes' warps) x SK_RF_TC_ROWS
 * floats. Same parameters and modes as the SIMT kernels. */
#define SK_RF_TC_THREADS 256u
#define SK_RF_TC_ROWS 64u
#define SK_RF_TC_PASS 256u

typedef struct sk_rf_features_params {
    const void *x;
    const float *w;
    void *out;
    float *shift;             /* [rows]                                               */
    uint64_t rows;
    uint64_t x_stride;
    uint64_t out_stride;
    uint32_t dim;
    uint32_t features;
    uint32_t mode;            /* SK_RF_SHIFT_*                                        */
    uint32_t fused;           /* SK_RF_SHIFT_ROW: exponents kept in shared memory     */
    uint32_t group_rows;      /* SK_RF_GROUP_SHIFT: rows per group                     */
    uint32_t reserved;
    float input_scale;        /* s                                                    */
    float norm_coefficient;   /* c: 1/2 softmax kernel, 1 Gaussian kernel             */
    float eps;
    float feature_scale;      /* m^-1/2                                               */
} sk_rf_features_params;

/* FAVOR+ attention over `heads` sequences of `len` rows, from the features phiq, phik
 * ([heads * len, features] f32, from sk_rf_features_*) and v ([heads * len, value_dim] in the
 * storage type). Segments of `segment` rows: SK_FAVOR_STATE writes each segment's
 * S = sum phik_j [v_j, 1]^T (features x (value_dim + 1), f32) to states[head][segment];
 * SK_FAVOR_PREFIX turns them into exclusive prefix sums (causal) or puts the total in segment 0;
 * SK_FAVOR_OUTPUT (a warp per tile of SK_FAVOR_TILE_ROWS positions) writes
 * out_i = phiq_i (S + intra_i)[:, :dv] / (phiq_i (S + intra_i)[:, dv] + guard), intra_i the
 * causal part of the row's own segment. Both products run on the tensor cores, the state sums
 * as a warp per (head, segment, SK_FAVOR_TASK_FEATURES features, SK_FAVOR_TASK_COLUMNS columns).
 * With `reverse` set, SK_FAVOR_PREFIX makes exclusive suffix sums instead (the gradient). */
#define SK_FAVOR_THREADS 256u
#define SK_FAVOR_SEGMENT 64u
#define SK_FAVOR_TILE_ROWS 16u
#define SK_FAVOR_TASK_FEATURES 32u
#define SK_FAVOR_TASK_COLUMNS 72u
#define SK_FAVOR_MAX_VALUE_DIM 255u
#define SK_FAVOR_STATE 0u
#define SK_FAVOR_PREFIX 1u
#define SK_FAVOR_OUTPUT 2u

typedef struct sk_favor_params {
    const float *phiq;
    const float *phik;
    const void *v;
    void *out;
    float *states;            /* [heads][segments][features][value_dim + 1]           */
    uint64_t heads;
    uint64_t len;
    uint64_t v_stride;
    uint64_t out_stride;
    uint32_t features;
    uint32_t value_dim;
    uint32_t segments;        /* ceil(len / SK_FAVOR_SEGMENT)                         */
    uint32_t causal;
    float guard;
    uint32_t reverse;         /* SK_FAVOR_PREFIX: exclusive suffix sums (gradients)     */
} sk_favor_params;

/* Gradient of the feature map: dx_r = s sum_i g_ri w_i - 2 c s^2 x_r sum_i g_ri with
 * g_ri = dphi_ri m^-1/2 exp(a_ri - shift_r) (the shift the forward pass wrote, held constant).
 * A warp per row; dynamic shared memory holds each warp's g (SK_RF_THREADS / 32 * features floats).
 * Reuses sk_rf_features_params: x, w, shift, rows, x_stride, dim, features, input_scale,
 * norm_coefficient, feature_scale as in the forward pass, and: */
/* Kernel estimates for a batch of pairs, a warp per pair:
 *   out[p] = log K^(x_p, y_p) = log((1/m) sum_i exp(a_pi)),
 *   a_pi = w_i . (x_p + y_p) - c (|x_p|^2 + |y_p|^2),
 * the sum taken from the largest a_pi (an online log-sum-exp), so nothing overflows or
 * underflows before log K^ does. x and y are [pairs, dim] in the storage type with row strides
 * x_stride and y_stride; w is [features, dim] f32; out is f32. A pair with a non-finite entry
 * gets NaN. */
typedef struct sk_rf_estimate_params {
    const void *x;
    const void *y;
    const float *w;
    float *out;
    uint64_t pairs;
    uint64_t x_stride;
    uint64_t y_stride;
    uint32_t dim;
    uint32_t features;
    float norm_coefficient;   /* c: 1/2 softmax kernel, 1 Gaussian kernel             */
    uint32_t reserved;
} sk_rf_estimate_params;

typedef struct sk_rf_backward_params {
    sk_rf_features_params f;
    const void *dphi;         /* [rows, features], row stride dphi_stride; storage type,
                                 or f32 for sk_rf_features_backward_*_from_f32         */
    void *dx;                 /* [rows, dim], row stride dx_stride                       */
    uint64_t dphi_stride;
    uint64_t dx_stride;
} sk_rf_backward_params;

/* FAVOR+ gradient of sum dout . out with respect to q, k and v, the feature shifts held
 * constant, after the forward stages (features, states and their prefix sums) in the same
 * workspace. With width = value_dim + 1 and den_i = phiq_i (S + intra_i)[:, dv] + guard:
 * sk_favor_grad_g_* recomputes out_i in f32 and writes
 *   G_i = [dout_i / den_i, -(dout_i . out_i) / den_i]  ([rows, width] f32, to g);
 * sk_favor_grad_query_* writes dphiq_i = (S + intra_i) G_i ([rows, features] f32);
 * sk_favor_grad_state sums phiq_i G_i^T over each segment into dstates (like states), which
 *   SK_FAVOR_PREFIX with reverse = 1 turns into exclusive suffix sums (causal) or the total;
 * sk_favor_grad_key_* and sk_favor_grad_value_*, with D_j the row's suffix state (or the
 *   total) plus the causal part of its own segment (i >= j), write dphik_j = D_j [v_j, 1]
 *   (f32) and dv_j = D_j[:, :dv]^T phik_j (storage type).
 * All but the prefix sums run on the tensor cores, a warp per SK_FAVOR_TILE_ROWS rows.
 * The feature-map gradients (sk_rf_features_backward_*_from_f32) then give dq and dk. */
typedef struct sk_favor_backward_params {
    sk_favor_params f;        /* the forward stages' parameters (out unused)           */
    const void *dout;         /* [rows, value_dim], row stride dout_stride              */
    void *dv;                 /* [rows, value_dim], row stride dv_stride                */
    float *g;                 /* [rows, value_dim + 1]                                 */
    float *dstates;           /* [heads][segments][features][value_dim + 1]            */
    float *dphiq;             /* [rows, features]                                      */
    float *dphik;             /* [rows, features]                                      */
    uint64_t dout_stride;
    uint64_t dv_stride;
} sk_favor_backward_params;

#endif /* SPHEREKIT_PARAMS_H */
