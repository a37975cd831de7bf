-- 0005_model_kv_cache_dtype_quantization: a model's --kv-cache-dtype for its engine; '' is
-- the engine's auto (the weights' dtype: float32 stays float32, 16-bit and quantized weights
-- get bfloat16). And its --quantization at load; '' is none (a pre-quantized checkpoint's own
-- format is read from its config.json).
ALTER TABLE models ADD COLUMN kv_cache_dtype TEXT NOT NULL DEFAULT ''
    CHECK (kv_cache_dtype IN ('', 'bfloat16', 'float32', 'fp8'));
ALTER TABLE models ADD COLUMN quantization TEXT NOT NULL DEFAULT ''
    CHECK (quantization IN ('', 'int8', 'int4', 'fp8'));
