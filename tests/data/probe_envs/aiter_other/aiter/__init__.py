raise ValueError("malformed tuned config: aiter/configs/tuned_gemm.csv")
