/* Body of _row_kernels.h for one element type CMLP_T (see there). */

/* z (n) += sum over t < count of c[t] * r[t]: a full group of four in one
 * pass over z, summed ((c0 r0 + c1 r1) + c2 r2) + c3 r3; the leftovers of a
 * row (fewer than four) one by one. Every kernel that forms z = b + x @ W
 * goes through this, so they all round alike. */
static inline void CMLP_NAME(cmlp_add_rows)(CMLP_T *restrict z, const CMLP_T *c,
                                            const CMLP_T *const *r, int count, ptrdiff_t n)
{
    ptrdiff_t j;
    int t;
    if (count == 4) {
        const CMLP_T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
        const CMLP_T *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
        for (j = 0; j < n; j++)
            z[j] += c0 * r0[j] + c1 * r1[j] + c2 * r2[j] + c3 * r3[j];
        return;
    }
    for (t = 0; t < count; t++)
        for (j = 0; j < n; j++)
            z[j] += c[t] * r[t][j];
}

/* z (n_out) = b + x (n_in) @ W (n_in, n_out), row-major W. The nonzero
 * inputs are taken four at a time, so z is loaded and stored once per four
 * rows of W. */
CMLP_CLONES static void CMLP_NAME(cmlp_row_times_matrix)(
        CMLP_T *restrict z,                     /* OUT (n_out) */
        const CMLP_T *restrict x,               /* IN  (n_in) */
        const CMLP_T *restrict W,               /* IN  (n_in, n_out) */
        const CMLP_T *restrict b,               /* IN  (n_out) */
        ptrdiff_t n_in, ptrdiff_t n_out)
{
    CMLP_T c[4];
    const CMLP_T *r[4];
    ptrdiff_t i;
    int count = 0;
    memcpy(z, b, (size_t)n_out * sizeof(CMLP_T));
    for (i = 0; i < n_in; i++) {
        if (x[i] == 0)
            continue;
        c[count] = x[i];
        r[count] = W + i * n_out;
        if (++count == 4) {
            CMLP_NAME(cmlp_add_rows)(z, c, r, 4, n_out);
            count = 0;
        }
    }
    CMLP_NAME(cmlp_add_rows)(z, c, r, count, n_out);
}

/* Dot product with eight partial sums in a fixed order: the compiler may not
 * reassociate a floating-point sum (no -ffast-math); this lets it vectorise
 * all the same, identically in every clone. */
static inline CMLP_T CMLP_NAME(cmlp_dot)(const CMLP_T *restrict x,
                                         const CMLP_T *restrict y, ptrdiff_t n)
{
    CMLP_T s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t j, head = n - n % 8;
    int t;
    for (j = 0; j < head; j += 8)
        for (t = 0; t < 8; t++)
            s[t] += x[j + t] * y[j + t];
    for (j = head; j < n; j++)
        s[0] += x[j] * y[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* One-row backward of a linear layer with the SGD step fused in:
 * da_prev = W @ dz with the old W (skipped if da_prev is NULL), then
 * W -= lr * outer(a_prev, dz) and b -= lr * dz, in one pass over W: each row
 * gives its dot product and is updated while it is in cache. */
CMLP_CLONES static void CMLP_NAME(cmlp_row_backward_sgd)(
        CMLP_T *restrict da_prev,               /* OUT (n_in) or NULL */
        CMLP_T *restrict W,                     /* IN/OUT (n_in, n_out) */
        CMLP_T *restrict b,                     /* IN/OUT (n_out) */
        const CMLP_T *restrict dz,              /* IN  (n_out) */
        const CMLP_T *restrict a_prev,          /* IN  (n_in) */
        CMLP_T lr, ptrdiff_t n_in, ptrdiff_t n_out)
{
    ptrdiff_t i, j;
    for (i = 0; i < n_in; i++) {
        CMLP_T *restrict row = W + i * n_out;
        if (da_prev != NULL)
            da_prev[i] = CMLP_NAME(cmlp_dot)(row, dz, n_out);
        if (a_prev[i] != 0) {
            const CMLP_T step = lr * a_prev[i];
            for (j = 0; j < n_out; j++)
                row[j] -= step * dz[j];
        }
    }
    for (j = 0; j < n_out; j++)
        b[j] -= lr * dz[j];
}

/* The one-row SGD step of a first layer fused with the next row's forward
 * product through it: b -= lr * dz, then for each row i of W,
 * W[i] -= lr * a_prev[i] * dz (if a_prev[i] != 0) and, while W[i] is in
 * cache, z_next += x_next[i] * W[i] (if x_next[i] != 0). W is read and
 * written once for both. The sums are grouped exactly as in
 * cmlp_row_times_matrix (nonzero inputs four at a time, every row of a group
 * already updated), so z_next has the bits of that kernel run after the
 * step. */
CMLP_CLONES static void CMLP_NAME(cmlp_row_sgd_then_forward)(
        CMLP_T *restrict W,                     /* IN/OUT (n_in, n_out) */
        CMLP_T *restrict b,                     /* IN/OUT (n_out) */
        const CMLP_T *restrict dz,              /* IN  (n_out) */
        const CMLP_T *restrict a_prev,          /* IN  (n_in) this step's row */
        CMLP_T lr,
        const CMLP_T *restrict x_next,          /* IN  (n_in) the next row */
        CMLP_T *restrict z_next,                /* OUT (n_out) */
        ptrdiff_t n_in, ptrdiff_t n_out)
{
    CMLP_T c[4];
    const CMLP_T *r[4];
    ptrdiff_t i, j;
    int count = 0;
    for (j = 0; j < n_out; j++)
        b[j] -= lr * dz[j];
    memcpy(z_next, b, (size_t)n_out * sizeof(CMLP_T));
    for (i = 0; i < n_in; i++) {
        CMLP_T *row = W + i * n_out;     /* based on W: no restrict of its own */
        if (a_prev[i] != 0) {
            const CMLP_T step = lr * a_prev[i];
            for (j = 0; j < n_out; j++)
                row[j] -= step * dz[j];
        }
        if (x_next[i] == 0)
            continue;
        c[count] = x_next[i];
        r[count] = row;
        if (++count == 4) {
            CMLP_NAME(cmlp_add_rows)(z_next, c, r, 4, n_out);
            count = 0;
        }
    }
    CMLP_NAME(cmlp_add_rows)(z_next, c, r, count, n_out);
}
