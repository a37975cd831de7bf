/* cpu_kernels_undef.h: clears the vector primitives that cpu_kernels.c defines for one ISA
 * before it includes cpu_kernels_impl.h, so the next ISA block can define them afresh. */
#undef V
#undef VL
#undef GEMM_RT
#undef V_ZERO
#undef V_SET1
#undef V_LOAD_F32
#undef V_LOAD_BF16
#undef V_LOAD_F16
#undef V_FMA
#undef V_ADD
#undef V_STORE
#undef V_REDUCE
#undef REDUCE_TILE
#undef REDUCE_VL
#undef V_MUL
#undef V_SUB
#undef V_MAX
#undef V_REDUCE_MAX
#undef V_DIV
#undef V_MIN
#undef V_ROUND
#undef V_LDEXP
#undef KFN
#undef PREFETCH_AHEAD
#undef KFN_ISA
