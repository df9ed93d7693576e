/*
 * gateloop.cu — CUDA GateLoop ops (kernels/gateloop.h): the transition's row
 * stage (+ backward), the recurrent step over rows, the chunked scan, the
 * associative scan and the materialized mixing matrix (forward). The
 * backwards of the two scans' matrix forms are in gateloop_backward.cu.
 * Math, `work` layouts and summation orders are the CPU's (cpu/gateloop.c),
 * followed phase for phase; the saved part of the chunked scan's work (the
 * states entering each chunk, [nc, H, N, P] at its start) is the same, so
 * the backward reads what this forward left.
 *
 * Kept simple (correct first): one thread per output element or per
 * independent chain ((chunk, head, pair) for the chunk's prefix sums, (head,
 * pair, column) for the state passing), looping in the CPU's order. Cumulative
 * phases in double, reduced mod 2π with remainder() as the CPU's gl_wrap;
 * decays below GL_EXP_FLUSH are exactly 0. Deterministic: one writer per
 * output, fixed order, no atomics.
 *
 * Letters: T tokens (n rows), H heads, N q/k dims per head, J = N/2 pairs,
 * P v dims, HJ = H·J, Q chunk, Lc ≤ Q this chunk's length, nc = ceil(T/Q).
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gateloop.cuh"

// ----------------------------------------------------------------------------
// prep:  la = log sigmoid(a_mag + b),  th = a_phase + b

__global__ void k_gl_prep(float *la, float *th, const float *a, int lda, const float *b, int n,
                          int HJ) {
    GL_GRID_STRIDE(e, (size_t)n * HJ) {
        size_t r = e / HJ;
        int    i = (int)(e % HJ);
        const float *ar = a + r * lda;
        la[e] = gl_logsigmoid(ar[i] + (b ? b[i] : 0.0f));
        th[e] = ar[HJ + i] + (b ? b[HJ + i] : 0.0f);
    }
}

extern "C" void cuda_gl_prep(const molt_exec *ex, float *la, float *th, const float *a, int lda,
                             const float *bias, int n, int HJ) {
    if (n <= 0 || HJ <= 0)
        return;
    size_t m = (size_t)n * HJ;
    k_gl_prep<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(la, th, a, lda, bias, n, HJ);
    CU_LAUNCHED("k_gl_prep");
}

// ∂a_mag = ∂la·sigmoid(−(a + b)) = ∂la / (1 + e^{a+b}),  ∂a_phase = ∂th
__global__ void k_gl_prep_bwd(float *da, int lda, const float *dla, const float *dth,
                              const float *a, const float *b, int n, int HJ) {
    GL_GRID_STRIDE(e, (size_t)n * HJ) {
        size_t r = e / HJ;
        int    i = (int)(e % HJ);
        float  x = a[r * lda + i] + (b ? b[i] : 0.0f);
        da[r * lda + i] = dla ? dla[e] / (1.0f + expf(x)) : 0.0f;
        da[r * lda + HJ + i] = dth ? dth[e] : 0.0f;
    }
}

extern "C" void cuda_gl_prep_backward(const molt_exec *ex, float *da, int lda, const float *dla,
                                      const float *dth, const float *a, const float *bias, int n,
                                      int HJ) {
    if (n <= 0 || HJ <= 0)
        return;
    size_t m = (size_t)n * HJ;
    k_gl_prep_bwd<<<cu_blocks(m, 256), 256, 0, cu_stream(ex)>>>(da, lda, dla, dth, a, bias, n,
                                                                HJ);
    CU_LAUNCHED("k_gl_prep_bwd");
}

// ----------------------------------------------------------------------------
// recurrent step over rows: block (head, row of the batch), a thread per v
// column p; pairs in order as the CPU (y[p] summed over j in order).
//   S[j,p] ← a_j·S[j,p] + k̃_j·v[p]      y[p] = Σ_j Re(q̃_j·S[j,p])

__global__ void k_gl_step_rows(float *y, gl_ptrs st, int r0, const float *q, const float *k,
                               const float *v, int ld, const float *la, const float *th, int H,
                               int N, int P) {
    int    h = blockIdx.x, rb = blockIdx.y, r = r0 + rb, J = N / 2, HJ = H * J;
    float *S = st.p[rb] + (size_t)h * N * P;
    const float *qr = q + (size_t)r * ld + (size_t)h * N, *kr = k + (size_t)r * ld + (size_t)h * N;
    const float *vr = v + (size_t)r * ld + (size_t)h * P;
    const float *lr = la + (size_t)r * HJ + (size_t)h * J;
    const float *tr = th + (size_t)r * HJ + (size_t)h * J;
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
        float acc = 0.0f, vp = vr[p];
        for (int jj = 0; jj < J; jj++) {
            float  m = gl_decay(lr[jj]), ar = m * cosf(tr[jj]), ai = m * sinf(tr[jj]);
            float *Sr = S + (size_t)(2 * jj) * P, *Si = Sr + P;
            float  re = ar * Sr[p] - ai * Si[p] + kr[2 * jj] * vp;
            float  im = ar * Si[p] + ai * Sr[p] + kr[2 * jj + 1] * vp;
            Sr[p] = re;
            Si[p] = im;
            acc += qr[2 * jj] * re - qr[2 * jj + 1] * im;
        }
        y[((size_t)r * H + h) * P + p] = acc;
    }
}

extern "C" void cuda_gl_step_rows(const molt_exec *ex, float *y, float *const *state,
                                  const float *q, const float *k, const float *v, int ld,
                                  const float *la, const float *th, int n, int H, int N, int P) {
    if (n <= 0 || H <= 0)
        return;
    for (int r0 = 0; r0 < n; r0 += GL_MAXPTR) {
        int     nb = n - r0 < GL_MAXPTR ? n - r0 : GL_MAXPTR;
        gl_ptrs st;
        for (int i = 0; i < nb; i++)
            st.p[i] = state[r0 + i];
        dim3 grid((unsigned)H, (unsigned)nb);
        k_gl_step_rows<<<grid, gl_threads(P), 0, cu_stream(ex)>>>(y, st, r0, q, k, v, ld, la, th,
                                                                  H, N, P);
        CU_LAUNCHED("k_gl_step_rows");
    }
}

// ----------------------------------------------------------------------------
// chunked scan (cpu/gateloop.c has the equations). Work: the CPU's layout
//   st [nc,H,N,P] | vbuf [H,N,P] | lc, sf, cs, sn, seg [H,T,J] | qh, kh [H,T,N] | row [H,T]
// plus a stream-ordered scratch rows [H, T, Qc] (one row of intra-chunk
// scores per token; the CPU keeps one row at a time).

// tables: one thread per (chunk, head, pair), the chunk's tokens in order
__global__ void k_gl_tables(float *lc, float *sf, float *cs, float *sn, const float *la,
                            const float *th, int T, int H, int J, int Q, int nc) {
    GL_GRID_STRIDE(e, (size_t)nc * H * J) {
        int    jj = (int)(e % J), h = (int)(e / J % H), c = (int)(e / J / H), HJ = H * J;
        int    t0 = c * Q, Lc = T - t0 < Q ? T - t0 : Q;
        size_t o = ((size_t)h * T + t0) * J + jj;
        float  l = 0.0f;
        double f = 0.0;
        for (int i = 0; i < Lc; i++) {
            size_t tj = (size_t)(t0 + i) * HJ + (size_t)h * J + jj;
            l += la[tj];
            f = gl_wrap(f + (double)th[tj]);
            lc[o + (size_t)i * J] = l;
            cs[o + (size_t)i * J] = (float)cos(f);
            sn[o + (size_t)i * J] = (float)sin(f);
        }
        l = 0.0f;
        for (int i = Lc - 1; i >= 0; i--) {
            sf[o + (size_t)i * J] = l;
            l += la[(size_t)(t0 + i) * HJ + (size_t)h * J + jj];
        }
    }
}

// q̂ = q̃·e^{iΦ}, k̂ = k̃·e^{−iΦ} at (h, t, pair): one thread each. cs, sn [H,T,J]
__global__ void k_gl_rotate(float *qh, float *kh, const float *q, const float *k, int ld,
                            const float *cs, const float *sn, int T, int H, int N) {
    int J = N / 2;
    GL_GRID_STRIDE(e, (size_t)H * T * J) {
        size_t ht = e / J;
        int    jj = (int)(e % J), h = (int)(ht / T), t = (int)(ht % T);
        float  c = cs[e], s = sn[e];
        const float *qt = q + (size_t)t * ld + (size_t)h * N + 2 * jj;
        const float *kt = k + (size_t)t * ld + (size_t)h * N + 2 * jj;
        gl_rot(qh + ht * N + 2 * jj, qt[0], qt[1], c, s);
        gl_rot(kh + ht * N + 2 * jj, kt[0], kt[1], c, -s);
    }
}

// intra-chunk scores of token t (one thread per (h, t)): rows[h,t,s−t0] for s
// = i..0 of its chunk, seg grown from the diagonal (seg: its own J floats)
__global__ void k_gl_scores(float *rows, float *seg, const float *qh, const float *kh,
                            const float *la, int T, int H, int N, int Q, int Qc) {
    int J = N / 2, HJ = H * J;
    GL_GRID_STRIDE(e, (size_t)H * T) {
        int    h = (int)(e / T), t = (int)(e % T), t0 = t / Q * Q, i = t - t0;
        float *sg = seg + e * J, *row = rows + e * Qc;
        const float *qt = qh + e * N, *kb = kh + ((size_t)h * T + t0) * N;
        for (int jj = 0; jj < J; jj++)
            sg[jj] = 0.0f;
        for (int s = i; s >= 0; s--) {
            const float *l = la + (size_t)(t0 + s) * HJ + (size_t)h * J;
            row[s] = gl_score(qt, kb + (size_t)s * N, sg, J);
            for (int jj = 0; jj < J; jj++)
                sg[jj] += l[jj];
        }
    }
}

// S_c = e^{iΦ_last}·Σ_s exp(sf_s)·k̂_s ⊗ v_s: one thread per (c, h, pair, p)
__global__ void k_gl_chunk_state(float *st, const float *kh, const float *sf, const float *cs,
                                 const float *sn, const float *v, int ld, int T, int H, int N,
                                 int P, int Q, int nc) {
    int J = N / 2;
    GL_GRID_STRIDE(e, (size_t)nc * H * J * P) {
        int    p = (int)(e % P);
        size_t r = e / P;
        int    jj = (int)(r % J);
        size_t ch = r / J; // c·H + h
        int    h = (int)(ch % H), c = (int)(ch / H), t0 = c * Q;
        int    Lc = T - t0 < Q ? T - t0 : Q;
        size_t o = (size_t)h * T + t0;
        float  Sr = 0.0f, Si = 0.0f;
        for (int s = 0; s < Lc; s++) {
            float vs = v[(size_t)(t0 + s) * ld + (size_t)h * P + p];
            float w = gl_decay(sf[(o + s) * J + jj]);
            float kr = w * kh[(o + s) * N + 2 * jj], ki = w * kh[(o + s) * N + 2 * jj + 1];
            Sr += kr * vs;
            Si += ki * vs;
        }
        float cl = cs[(o + Lc - 1) * J + jj], sl = sn[(o + Lc - 1) * J + jj];
        float *S = st + ch * (size_t)N * P + (size_t)(2 * jj) * P + p;
        S[0] = cl * Sr - sl * Si;
        S[P] = cl * Si + sl * Sr;
    }
}

// state passing, one thread per (h, pair, p): st[c] ← S_in[c]; v ← A_c·S_in[c] + S_c
__global__ void k_gl_pass(float *st, float *state, float *vbuf, const float *lc, const float *cs,
                          const float *sn, int T, int H, int N, int P, int Q, int nc) {
    int    J = N / 2;
    size_t NP = (size_t)N * P;
    GL_GRID_STRIDE(e, (size_t)H * J * P) {
        int    p = (int)(e % P), jj = (int)(e / P % J), h = (int)(e / P / J);
        float *v = (state ? state : vbuf) + (size_t)h * NP + (size_t)(2 * jj) * P + p;
        float  vr = state ? v[0] : 0.0f, vi = state ? v[P] : 0.0f;
        for (int c = 0; c < nc; c++) {
            int    t_last = (c + 1) * Q < T ? (c + 1) * Q - 1 : T - 1;
            size_t o = ((size_t)h * T + t_last) * J + jj;
            float *sc = st + ((size_t)c * H + h) * NP + (size_t)(2 * jj) * P + p;
            float  cr = sc[0], ci = sc[P]; // S_c
            sc[0] = vr, sc[P] = vi;        // S_in[c]
            float m = gl_decay(lc[o]), ar = m * cs[o], ai = m * sn[o];
            float re = ar * vr - ai * vi, im = ar * vi + ai * vr;
            vr = cr + re;
            vi = ci + im;
        }
        v[0] = vr, v[P] = vi;
    }
}

// y: the intra-chunk sum (s ascending, as the CPU) plus the entering state's
// term (pairs in order). One thread per (h, t, p).
__global__ void k_gl_chunk_y(float *y, const float *rows, const float *st, const float *qh,
                             const float *lc, const float *v, int ld, int T, int H, int N, int P,
                             int Q, int Qc, int has_state) {
    int J = N / 2;
    GL_GRID_STRIDE(e, (size_t)H * T * P) {
        int    p = (int)(e % P);
        size_t ht = e / P;
        int    h = (int)(ht / T), t = (int)(ht % T), c = t / Q, t0 = c * Q, i = t - t0;
        const float *row = rows + ht * Qc;
        float        acc = 0.0f;
        for (int s = 0; s <= i; s++)
            acc += row[s] * v[(size_t)(t0 + s) * ld + (size_t)h * P + p];
        if (c > 0 || has_state) {
            const float *S = st + ((size_t)c * H + h) * (size_t)N * P;
            const float *q = qh + ht * N, *l = lc + ht * J;
            for (int jj = 0; jj < J; jj++) {
                float e2 = gl_decay(l[jj]);
                if (e2 == 0.0f)
                    continue;
                float qr = e2 * q[2 * jj], qi = e2 * q[2 * jj + 1];
                acc += qr * S[(size_t)(2 * jj) * P + p] - qi * S[(size_t)(2 * jj + 1) * P + p];
            }
        }
        y[((size_t)t * H + h) * P + p] = acc;
    }
}

extern "C" void cuda_gl_scan_chunked(const molt_exec *ex, float *y, float *state, const float *q,
                                     const float *k, const float *v, int ld, const float *la,
                                     const float *th, int T, int H, int N, int P, int Q,
                                     float *work) {
    if (T <= 0 || H <= 0)
        return;
    if (Q > T)
        Q = T;
    int          nc = (T + Q - 1) / Q, J = N / 2;
    size_t       NP = (size_t)N * P, HT = (size_t)H * T;
    cudaStream_t s = cu_stream(ex);
    float *st = work, *vbuf = st + (size_t)nc * H * NP, *lc = vbuf + (size_t)H * NP;
    float *sf = lc + HT * J, *cs = sf + HT * J, *sn = cs + HT * J, *seg = sn + HT * J;
    float *qh = seg + HT * J, *kh = qh + HT * N;
    float *rows = (float *)cu_scratch(ex, sizeof(float) * HT * (size_t)Q);
    if (!rows)
        return;
    size_t m = (size_t)nc * H * J;
    if (J > 0) {
        k_gl_tables<<<cu_blocks(m, 64), 64, 0, s>>>(lc, sf, cs, sn, la, th, T, H, J, Q, nc);
        CU_LAUNCHED("k_gl_tables");
        m = HT * J;
        k_gl_rotate<<<cu_blocks(m, 256), 256, 0, s>>>(qh, kh, q, k, ld, cs, sn, T, H, N);
        CU_LAUNCHED("k_gl_rotate");
    }
    k_gl_scores<<<cu_blocks(HT, 64), 64, 0, s>>>(rows, seg, qh, kh, la, T, H, N, Q, Q);
    CU_LAUNCHED("k_gl_scores");
    m = (size_t)nc * H * J * P;
    if (m) {
        k_gl_chunk_state<<<cu_blocks(m, 256), 256, 0, s>>>(st, kh, sf, cs, sn, v, ld, T, H, N, P,
                                                           Q, nc);
        CU_LAUNCHED("k_gl_chunk_state");
        m = (size_t)H * J * P;
        k_gl_pass<<<cu_blocks(m, 128), 128, 0, s>>>(st, state, vbuf, lc, cs, sn, T, H, N, P, Q,
                                                    nc);
        CU_LAUNCHED("k_gl_pass");
    }
    m = HT * P;
    if (m) {
        k_gl_chunk_y<<<cu_blocks(m, 256), 256, 0, s>>>(y, rows, st, qh, lc, v, ld, T, H, N, P, Q,
                                                       Q, state != NULL);
        CU_LAUNCHED("k_gl_chunk_y");
    }
    cu_scratch_free(ex, rows);
}

// ----------------------------------------------------------------------------
// associative scan: one block per (head, pair); the Hillis-Steele rounds
// double-buffered (round r reads buffer r mod 2, writes the other; the CPU's
// descending in-place loop reads the same previous-round values), then
// S_t = A_t·S_0 + B_t written into work's B and S_0 ← S_{T−1}; y summed over
// pairs in order by a second kernel. Work: ls, ph [H,J,T], B [H,J,T,2,P]
// (the CPU's), plus a scratch copy of the same size (the other buffer).

__global__ void k_gl_assoc(float *state, float *ls0, float *ph0, float *B0, float *ls1,
                           float *ph1, float *B1, const float *k, const float *v, int ld,
                           const float *la, const float *th, int T, int H, int N, int P) {
    int    h = blockIdx.x / (N / 2), jj = blockIdx.x % (N / 2), J = N / 2, HJ = H * J;
    size_t P2 = 2 * (size_t)P, o = ((size_t)h * J + jj) * T, nb = (size_t)T * P2;
    float *ls = ls0 + o, *ph = ph0 + o, *B = B0 + o * P2;      // current
    float *lo = ls1 + o, *po = ph1 + o, *Bo = B1 + o * P2;     // the other buffer
    for (int t = threadIdx.x; t < T; t += blockDim.x) {
        ls[t] = la[(size_t)t * HJ + (size_t)h * J + jj];
        ph[t] = (float)gl_wrap((double)th[(size_t)t * HJ + (size_t)h * J + jj]);
    }
    for (size_t e = threadIdx.x; e < nb; e += blockDim.x) {
        size_t t = e / P2;
        int    p = (int)(e % P2), im = p >= P;
        float  kv = k[t * ld + (size_t)h * N + 2 * jj + im];
        B[e] = kv * v[t * ld + (size_t)h * P + (im ? p - P : p)];
    }
    __syncthreads();
    for (int off = 1; off < T; off *= 2) {
        for (size_t e = threadIdx.x; e < nb; e += blockDim.x) {
            int t = (int)(e / P2), p = (int)(e % P2);
            if (t < off) {
                Bo[e] = B[e];
                continue;
            }
            const float *bi = B + (size_t)(t - off) * P2;
            float        m = gl_decay(ls[t]), ar = m * cosf(ph[t]), ai = m * sinf(ph[t]);
            float        add = p < P ? ar * bi[p] - ai * bi[P + p] : ar * bi[p] + ai * bi[p - P];
            Bo[e] = B[e] + add;
        }
        for (int t = threadIdx.x; t < T; t += blockDim.x) {
            lo[t] = t < off ? ls[t] : ls[t] + ls[t - off];
            po[t] = t < off ? ph[t] : (float)gl_wrap((double)ph[t] + (double)ph[t - off]);
        }
        __syncthreads();
        float *x = ls;
        ls = lo, lo = x;
        x = ph, ph = po, po = x;
        x = B, B = Bo, Bo = x;
    }
    // B into work's buffer (B0), plus A_t·S_0 when there is a state
    float *S0 = state ? state + ((size_t)h * N + 2 * jj) * P : NULL;
    float *Bw = B0 + o * P2;
    for (size_t e = threadIdx.x; e < nb; e += blockDim.x) {
        int   t = (int)(e / P2), p = (int)(e % P2);
        float b = B[e];
        if (S0) {
            float m = gl_decay(ls[t]), ar = m * cosf(ph[t]), ai = m * sinf(ph[t]);
            b += p < P ? ar * S0[p] - ai * S0[P + p] : ar * S0[p] + ai * S0[p - P];
        }
        Bw[e] = b;
    }
    __syncthreads();
    if (S0)
        for (int p = threadIdx.x; p < (int)P2; p += blockDim.x)
            S0[p] = Bw[(size_t)(T - 1) * P2 + p];
}

__global__ void k_gl_assoc_y(float *y, const float *B, const float *q, int ld, int T, int H,
                             int N, int P) {
    int    J = N / 2;
    size_t P2 = 2 * (size_t)P;
    GL_GRID_STRIDE(e, (size_t)T * H * P) {
        int    p = (int)(e % P);
        size_t th = e / P;
        int    h = (int)(th % H), t = (int)(th / H);
        float  acc = 0.0f;
        for (int jj = 0; jj < J; jj++) {
            const float *qq = q + (size_t)t * ld + (size_t)h * N + 2 * jj;
            const float *b = B + (((size_t)h * J + jj) * T + t) * P2;
            acc = (jj ? acc : 0.0f) + (qq[0] * b[p] - qq[1] * b[P + p]);
        }
        y[e] = acc;
    }
}

extern "C" void cuda_gl_scan_assoc(const molt_exec *ex, float *y, float *state, const float *q,
                                   const float *k, const float *v, int ld, const float *la,
                                   const float *th, int T, int H, int N, int P, float *work) {
    if (T <= 0 || H <= 0)
        return;
    int          J = N / 2;
    size_t       HJT = (size_t)H * J * T, nw = gl_assoc_work(T, H, N, P);
    cudaStream_t s = cu_stream(ex);
    if (J > 0) {
        float *scr = (float *)cu_scratch(ex, sizeof(float) * nw);
        if (!scr)
            return;
        k_gl_assoc<<<(unsigned)(H * J), 256, 0, s>>>(state, work, work + HJT, work + 2 * HJT, scr,
                                                    scr + HJT, scr + 2 * HJT, k, v, ld, la, th,
                                                    T, H, N, P);
        CU_LAUNCHED("k_gl_assoc");
        cu_scratch_free(ex, scr);
    }
    size_t m = (size_t)T * H * P;
    if (m) {
        k_gl_assoc_y<<<cu_blocks(m, 256), 256, 0, s>>>(y, work + 2 * HJT, q, ld, T, H, N, P);
        CU_LAUNCHED("k_gl_assoc_y");
    }
}

// ----------------------------------------------------------------------------
// materialized mixing matrix: q̂, k̂ by one thread per (h, pair) (double
// prefix phase from t = 0), then one thread per row (h, t), the segment sums
// grown from the diagonal in seg [H,T,J] (the CPU's work layout).

__global__ void k_gl_mat_rotate(float *qh, float *kh, const float *q, const float *k, int ld,
                                const float *th, int T, int H, int N, float *cs, float *sn) {
    int J = N / 2, HJ = H * J;
    GL_GRID_STRIDE(e, (size_t)H * J) {
        int    h = (int)(e / J), jj = (int)(e % J);
        double f = 0.0;
        for (int t = 0; t < T; t++) {
            f = gl_wrap(f + (double)th[(size_t)t * HJ + (size_t)h * J + jj]);
            float        c = (float)cos(f), s = (float)sin(f);
            const float *qt = q + (size_t)t * ld + (size_t)h * N + 2 * jj;
            const float *kt = k + (size_t)t * ld + (size_t)h * N + 2 * jj;
            size_t       o = ((size_t)h * T + t) * N + 2 * (size_t)jj;
            gl_rot(qh + o, qt[0], qt[1], c, s);
            gl_rot(kh + o, kt[0], kt[1], c, -s);
            if (cs) {
                cs[((size_t)h * T + t) * J + jj] = c;
                sn[((size_t)h * T + t) * J + jj] = s;
            }
        }
    }
}

__global__ void k_gl_mat_rows(float *M, float *seg, const float *qh, const float *kh,
                              const float *la, int T, int H, int N) {
    int J = N / 2, HJ = H * J;
    GL_GRID_STRIDE(ht, (size_t)H * T) {
        int    h = (int)(ht / T), t = (int)(ht % T);
        float *Mt = M + ht * T, *sg = seg + ht * J;
        const float *qt = qh + ht * N, *kb = kh + (size_t)h * T * N;
        for (int jj = 0; jj < J; jj++)
            sg[jj] = 0.0f;
        for (int s = t; s >= 0; s--) {
            const float *l = la + (size_t)s * HJ + (size_t)h * J;
            Mt[s] = gl_score(qt, kb + (size_t)s * N, sg, J);
            for (int jj = 0; jj < J; jj++)
                sg[jj] += l[jj];
        }
        for (int s = t + 1; s < T; s++)
            Mt[s] = 0.0f;
    }
}

extern "C" void cuda_gl_materialize(const molt_exec *ex, float *M, const float *q, const float *k,
                                    int ld, const float *la, const float *th, int T, int H, int N,
                                    float *work) {
    if (T <= 0 || H <= 0)
        return;
    size_t       HT = (size_t)H * T, m = (size_t)H * (N / 2);
    cudaStream_t s = cu_stream(ex);
    float       *qh = work, *kh = work + HT * N, *seg = work + 2 * HT * N;
    if (m) {
        k_gl_mat_rotate<<<cu_blocks(m, 64), 64, 0, s>>>(qh, kh, q, k, ld, th, T, H, N, NULL,
                                                        NULL);
        CU_LAUNCHED("k_gl_mat_rotate");
    }
    k_gl_mat_rows<<<cu_blocks(HT, 64), 64, 0, s>>>(M, seg, qh, kh, la, T, H, N);
    CU_LAUNCHED("k_gl_mat_rows");
}
