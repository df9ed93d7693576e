#!/usr/bin/env python3
"""ssd_tc_host.py — the tensor-core SSD form (src/kernels/cuda/ssm_tc.cu) run on the host.

The forward's and the backward's operand tables (`ops[]`), their batched-GEMM calls (`tc_gemm`)
and the order of the launches are PARSED from ssm_tc.cu; each GEMM is run as cuBLAS would run
it (column-major, the row-major operands passed transposed) over every (chunk, head) pair and
both parts (full chunks, the shorter last one), with the operand offsets checked to be multiples
of 4 floats (cuBLAS's fast-math batched GEMMs assume 16-byte-aligned matrices); the small kernels
(mask and decays, row scalings, the backward's matrices and ddA prefix sums, the passes, the
final sums) are transcribed from the same file. Everything in float64 against PyTorch autograd of
the plain recurrence: the decomposition, the pointer layouts and the leading dims are checked
here; CUDA itself (warps, shared memory, rounding) only on a GPU (test_backend_cuda --scan).
Exit 0 when every shape agrees to 1e-9, 1 otherwise.
"""
import os, re, sys
import numpy as np, torch
src=open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'kernels', 'cuda', 'ssm_tc.cu')).read()
def section(name):
    a=src.index('{',src.index('bool '+name+'(')); b=src.index('\n}\n',a); return src[a:b] # the body
def parse(sec):
    ops=re.findall(r'op_(\w\w)\(d, (\w+)\)', sec[sec.index('const tc_opnd ops[]'):sec.index('};',sec.index('const tc_opnd ops[]'))])
    calls=re.findall(r'(tc_gemm\(&r, [^;]*\);|k_tc_\w+<<<|tc_scale_rows|cu_ssd_\w+\()', sec)
    gemms=[tuple(x.strip() for x in c[len('tc_gemm(&r,'):-2].split(',')) if c.startswith('tc_gemm') else c for c in calls]
    return ops,gemms
ld4=lambda L:(L+3)&~3
def run(T,H,P,N,G,Q,seed=0):
    rng=np.random.default_rng(seed); hpg=H//G
    X=rng.standard_normal(T*H*P); dA=-rng.random(T*H)*0.5; B=rng.standard_normal(T*G*N); C=rng.standard_normal(T*G*N); dy=rng.standard_normal(T*H*P)
    if Q>T: Q=T
    nc=(T+Q-1)//Q; QQ=ld4(Q)**2
    lay={'xp':lambda:(Q*H*P,P,0),'bn':lambda:(Q*G*N,N,1),'hn':lambda:(Q*H*N,N,0),'st':lambda:(H*P*N,P*N,0),'qq':lambda:(H*QQ,QQ,0)}
    def cublas(opa,opb,m,n,k,A,ao,lda,Bf,bo,ldb,beta,Cf,co,ldc):
        assert ao%4==0 and bo%4==0 and co%4==0, 'misaligned operand'
        get=lambda buf,off,r,c,ld: buf[off+np.arange(r)[:,None]+np.arange(c)[None,:]*ld]
        Am=get(A,ao,m,k,lda) if opa=='N' else get(A,ao,k,m,lda).T
        Bm=get(Bf,bo,k,n,ldb) if opb=='N' else get(Bf,bo,n,k,ldb).T
        idx=co+np.arange(m)[:,None]+np.arange(n)[None,:]*ldc
        Cm=Am@Bm
        if beta: Cm=Cm+Cf[idx]
        Cf[idx]=Cm
    def gemm(bufs,ops,g,ta,tb,m,n,k,lda,ldb,beta,ldc):
        sym=lambda x,Lc:{'TC_L':Lc,'TC_LD':ld4(Lc),'N':N,'P':P,'GN':G*N,'HP':H*P,'HN':H*N}[x]
        nfull=T//Q; tail=T-nfull*Q
        for part in (0,1):
            Lc=tail if part else Q; nch=(1 if tail else 0) if part else nfull; c0=nfull if part else 0
            for c in range(c0,c0+nch):
                for h in range(H):
                    def opnd(kk):
                        kind,name=ops[3*g+kk]; cs,hs,gr=lay[kind](); return bufs[name],c*cs+(h//hpg if gr else h)*hs
                    (A,ao),(Bm,bo),(Cm,co)=opnd(0),opnd(1),opnd(2)
                    cublas('T' if int(tb) else 'N','T' if int(ta) else 'N',sym(n,Lc) if not n.isdigit() else int(n),sym(m,Lc),sym(k,Lc),Bm,bo,sym(ldb,Lc),A,ao,sym(lda,Lc),float(beta.rstrip('f')),Cm,co,sym(ldc,Lc))
    def cs_of(c,h):
        t0=c*Q; Lc=min(Q,T-t0); v=np.array([dA[(t0+i)*H+h] for i in range(Lc)])
        # tc_scan: warp inclusive scans of 32 with a carry (float order differs from cumsum only in rounding)
        out=np.zeros(Lc); carry=0.0
        for b in range(0,Lc,32):
            seg=v[b:b+32]; out[b:b+32]=np.cumsum(seg)+carry; carry=out[min(b+31,Lc-1)]
        return out,t0,Lc
    dec=lambda x: 0.0 if x< -60 else np.exp(x)
    def run_seq(name, bufs, kernels):
        # the section's launches in source order: GEMMs in numbering order, every other launch
        # one the check models (a new one in the source stops the check: KeyError)
        ops,seq=parse(section(name)); gi=0
        for step in seq:
            if isinstance(step,tuple):
                g,ta,tb,m,n,k,lda,ldb,beta,ldc=step; assert int(g)==gi, 'GEMMs out of order'; gi+=1
                gemm(bufs,ops,int(g),ta,tb,m,n,k,lda,ldb,beta,ldc)
            else:
                kernels[step]()
    PN=P*N
    # ---- forward
    cw=nc*H*P*N+H*P*N+3*H*T
    work=np.zeros(cw); st=work; din=np.zeros(H*T); dout=np.zeros(H*T)
    s1=np.zeros(nc*H*QQ); Xd=np.zeros(T*H*P); Cd=np.zeros(T*H*N); y=np.zeros(T*H*P)
    def mask():
        for c in range(nc):
            for h in range(H):
                cs,t0,Lc=cs_of(c,h); ld=ld4(Lc); o=(c*H+h)*QQ
                for i in range(Lc):
                    din[h*T+t0+i]=dec(cs[i]); dout[h*T+t0+i]=dec(cs[Lc-1]-cs[i])
                    for j in range(Lc):
                        s1[o+i*ld+j]*= dec(cs[i]-cs[j]) if j<=i else 0.0
    def scale_fwd():
        for t in range(T):
            for h in range(H):
                Xd[(t*H+h)*P:(t*H+h+1)*P]=dout[h*T+t]*X[(t*H+h)*P:(t*H+h+1)*P]
                g_=h//hpg; Cd[(t*H+h)*N:(t*H+h+1)*N]=din[h*T+t]*C[(t*G+g_)*N:(t*G+g_+1)*N]
    def state_pass():
        for h in range(H):
            v=np.zeros(PN)
            for c in range(nc):
                tl=min((c+1)*Q,T)-1; sl=slice((c*H+h)*PN,(c*H+h+1)*PN); loc=st[sl].copy(); st[sl]=v; v=din[h*T+tl]*v+loc
    run_seq('cu_ssd_tc_forward', {'C':C,'B':B,'s1':s1,'X':X,'y':y,'Xd':Xd,'st':st,'Cd':Cd},
            {'k_tc_mask<<<':mask, 'tc_scale_rows':scale_fwd, 'cu_ssd_state_pass(':state_pass})
    # reference
    tX=torch.tensor(X.reshape(T,H,P),requires_grad=True); tdA=torch.tensor(dA.reshape(T,H),requires_grad=True)
    tB=torch.tensor(B.reshape(T,G,N),requires_grad=True); tC=torch.tensor(C.reshape(T,G,N),requires_grad=True)
    s=torch.zeros(H,P,N,dtype=torch.float64); ys=[]
    for t in range(T):
        Bt=tB[t].repeat_interleave(hpg,0); Ct=tC[t].repeat_interleave(hpg,0)
        s=torch.exp(tdA[t])[:,None,None]*s+tX[t][:,:,None]*Bt[:,None,:]
        ys.append(torch.einsum('hpn,hn->hp',s,Ct))
    yr=torch.stack(ys); gX,gdA,gB,gC=torch.autograd.grad(yr,(tX,tdA,tB,tC),torch.tensor(dy.reshape(T,H,P)))
    res={'fwd':np.abs(y-yr.detach().numpy().ravel()).max()}
    # ---- backward
    nhn=T*H*N
    s1=np.zeros(nc*H*QQ); s2=np.zeros(nc*H*QQ); dyd=np.zeros(T*H*P); Xd=np.zeros(T*H*P); Bd=np.zeros(nhn); T1=np.zeros(nhn); T2=np.zeros(nhn); E=np.zeros(nc*H*P*N)
    dX=np.zeros(T*H*P); ddA=np.zeros(T*H); dBh=np.zeros(nhn); dCh=np.zeros(nhn); da=np.zeros(H*nc)
    dB=np.zeros(T*G*N); dC=np.zeros(T*G*N)
    def scale_bwd():
        for t in range(T):
            for h in range(H):
                sp=slice((t*H+h)*P,(t*H+h+1)*P); sn=slice((t*H+h)*N,(t*H+h+1)*N); g_=h//hpg
                dyd[sp]=din[h*T+t]*dy[sp]; Xd[sp]=dout[h*T+t]*X[sp]; Bd[sn]=dout[h*T+t]*B[(t*G+g_)*N:(t*G+g_+1)*N]
    def bwd_mats():
        for c in range(nc):
            for h in range(H):
                cs,t0,Lc=cs_of(c,h); ld=ld4(Lc); o=(c*H+h)*QQ; rs=np.zeros(Lc); col=np.zeros(Lc)
                for i in range(Lc):
                    for j in range(Lc):
                        e=o+i*ld+j; L=dec(cs[i]-cs[j]) if j<=i else 0.0; m_=s1[e]*L; wv=s2[e]*m_
                        s1[e]=m_; s2[e]=s2[e]*L; rs[i]+=wv; col[j]+=wv
                d=np.cumsum(col-rs)
                for k in range(Lc): ddA[(t0+k)*H+h]=d[k-1] if k else 0.0
    def adjoint_pass():
        for h in range(H):
            v=np.zeros(PN)
            for c in range(nc-1,0,-1):
                tl=min((c+1)*Q,T)-1; sl=slice((c*H+h)*PN,(c*H+h+1)*PN); loc=E[sl].copy(); E[sl]=v; v=din[h*T+tl]*v+loc
            E[h*PN:(h+1)*PN]=v
            for c in range(nc):
                tl=min((c+1)*Q,T)-1; sl=slice((c*H+h)*PN,(c*H+h+1)*PN)
                da[h*nc+c]=0.0 if c==0 else din[h*T+tl]*np.dot(E[sl],st[sl])
    def bwd_fin():
        for c in range(nc):
            for h in range(H):
                t0=c*Q; Lc=min(Q,T-t0); g_=h//hpg; r=np.zeros(Lc); q=np.zeros(Lc)
                for i in range(Lc):
                    o=((t0+i)*H+h)*N; ob=((t0+i)*G+g_)*N
                    r[i]=np.dot(C[ob:ob+N],T1[o:o+N]); q[i]=np.dot(B[ob:ob+N],T2[o:o+N])
                    dCh[o:o+N]+=T1[o:o+N]; dBh[o:o+N]+=T2[o:o+N]
                r=np.cumsum(r); q=np.cumsum(q)
                for k in range(Lc):
                    br=r[k-1] if k else 0.0; bq=q[k-1] if k else 0.0
                    ddA[(t0+k)*H+h]+=(r[Lc-1]-br)+bq+da[h*nc+c]
    def group_sum(): # (taken when H != G; with H == G it copies dBh, dCh: the same)
        dB[:]=dBh.reshape(T,G,hpg,N).sum(2).ravel(); dC[:]=dCh.reshape(T,G,hpg,N).sum(2).ravel()
    run_seq('cu_ssd_tc_backward',
            {'C':C,'B':B,'s1':s1,'s2':s2,'dy':dy,'X':X,'dX':dX,'dCh':dCh,'dBh':dBh,'dyd':dyd,'st':st,'T1':T1,'E':E,'Bd':Bd,'Xd':Xd,'T2':T2},
            {'tc_scale_rows':scale_bwd, 'k_tc_bwd_mats<<<':bwd_mats, 'cu_ssd_adjoint_pass(':adjoint_pass,
             'k_tc_bwd_fin<<<':bwd_fin, 'cu_ssd_group_sum(':group_sum})
    for nm,a,b in [('dX',dX,gX),('ddA',ddA,gdA),('dB',dB,gB),('dC',dC,gC)]:
        res[nm]=np.abs(a-b.numpy().ravel()).max()
    print(T,H,P,N,G,Q,' '.join('%s %.1e'%kv for kv in res.items()))
    return all(v < 1e-9 for v in res.values())
# T, H, P, N, G, Q: groups (G < H), partial last chunks, odd chunk sizes (padded leading
# dims), T < Q, one chunk
ok = True
for sh in [(17,4,8,16,2,8),(37,2,4,8,1,8),(33,3,4,4,3,7),(5,2,4,4,1,8),(16,2,4,4,2,16),(20,4,8,4,2,6)]:
    ok &= run(*sh)
print('ssd_tc_host: ' + ('all shapes agree' if ok else 'FAILED'))
sys.exit(0 if ok else 1)
