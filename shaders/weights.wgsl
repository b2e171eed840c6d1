// Loads from the quantized weight binding at arbitrary byte offsets.
//
// Every kernel that reads weights declares the binding itself, with this exact name:
//   @group(0) @binding(N) var<storage, read> weights: array<u32>; // rows x row_stride_bytes, little-endian
// GGUF blocks are only 2-byte aligned inside a row (Q8_0 is 34 bytes, Q5_0 22, Q6_K 210), so a field may start
// at any byte and straddle two words. Reads past the end are clamped by WebGPU, never undefined.
// Rows start on 16 bytes, and Q8_0, Q5_0 and Q6_K are regrouped at upload so that their fields are word-aligned
// and their quants 16-byte aligned (gpu/weights.rs has the layout).
//
// `weights4` is a second view of the same buffer, declared here because the dot_run and dequant32h of most types
// read it: binding 4, which matvec.wgsl and matmul_rows.wgsl bind (no other kernel calls those). One vec4<u32> load
// costs about what one u32 load does on CPU adapters (a loop over the SIMD lanes, a load each), for four times
// the bytes. (A uniform load is one gather there, and a probe streamed 1.3-1.8x faster through 64 KiB uniform
// windows. But a matvec must pick a row's window per lane, through a switch over the window bindings whose cases
// all run on lavapipe: the Q8_0 matvec ran 2x slower and F32 10x, so the weights stay in storage.)
@group(0) @binding(4) var<storage, read> weights4: array<vec4<u32>>;

// The byte at `byte`, in the low 8 bits.
fn weights_u8(byte: u32) -> u32 {
    return (weights[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
}

// The little-endian u32 starting at `byte` (any alignment).
fn weights_u32(byte: u32) -> u32 {
    let i = byte >> 2u;
    let sh = (byte & 3u) * 8u;
    let lo = weights[i];
    if (sh == 0u) {
        return lo;
    }
    // A shift by 32 is not "zero" in WGSL (the amount is taken mod 32), hence the branch.
    return (lo >> sh) | (weights[i + 1u] << (32u - sh));
}

// The little-endian u16 starting at `byte` (any alignment), in the low 16 bits.
fn weights_u16(byte: u32) -> u32 {
    let i = byte >> 2u;
    let sh = (byte & 3u) * 8u;
    if (sh == 24u) {
        return (weights[i] >> 24u) | ((weights[i + 1u] & 0xffu) << 8u);
    }
    return (weights[i] >> sh) & 0xffffu;
}

// IEEE half at `byte`, decoded without the shader-f16 feature.
fn weights_f16(byte: u32) -> f32 {
    return unpack2x16float(weights_u16(byte)).x;
}

// IEEE half at a 2-byte aligned `byte`: one word load.
fn weights_f16_2a(byte: u32) -> f32 {
    let h = unpack2x16float(weights[byte >> 2u]);
    return select(h.x, h.y, (byte & 2u) != 0u);
}

// bfloat16 at `byte`: the high half of an f32.
fn weights_bf16(byte: u32) -> f32 {
    return bitcast<f32>(weights_u16(byte) << 16u);
}

fn weights_f32(byte: u32) -> f32 {
    return bitcast<f32>(weights_u32(byte));
}

// Sign-extends the low 8 bits of `v`.
fn weights_i8(v: u32) -> i32 {
    return (bitcast<i32>(v << 24u)) >> 24u;
}

// Byte k (0..7) of the 8 bytes held in `v` (v.x = bytes 0..3, little-endian).
fn byte_of8(v: vec2<u32>, k: u32) -> u32 {
    return (select(v.x, v.y, k >= 4u) >> ((k & 3u) * 8u)) & 0xffu;
}

// The 8 bytes starting at `byte` (any alignment).
fn weights_u32x2(byte: u32) -> vec2<u32> {
    return vec2<u32>(weights_u32(byte), weights_u32(byte + 4u));
}

// The u32 at a 2-byte aligned `byte` (all GGUF block fields are): one word load when it is 4-aligned.
fn weights_u32_2a(byte: u32) -> u32 {
    let i = byte >> 2u;
    if ((byte & 2u) == 0u) {
        return weights[i];
    }
    return (weights[i] >> 16u) | (weights[i + 1u] << 16u);
}

// The 32 bytes at a 2-byte aligned `byte` as 8 words, from 9 word loads and no branches.
fn weights_window8(byte: u32) -> array<u32, 8> {
    let i = byte >> 2u;
    let odd = (byte & 2u) != 0u;
    var out: array<u32, 8>;
    var prev = weights[i];
    for (var k = 0u; k < 8u; k++) {
        let next = weights[i + 1u + k];
        out[k] = select(prev, (prev >> 16u) | (next << 16u), odd);
        prev = next;
    }
    return out;
}

// Sum of the 32 activations a dot32 multiplies (for the constant offsets of quant types).
fn sum32(xv: array<vec4<f32>, 8>) -> f32 {
    var s = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        s += xv[k];
    }
    return s.x + s.y + s.z + s.w;
}

// Bits 0..3 of `h` moved to bit 4 of bytes 0..3.
fn spread4_bit4(h: u32) -> u32 {
    return ((h & 1u) | ((h & 2u) << 7u) | ((h & 4u) << 14u) | ((h & 8u) << 21u)) << 4u;
}

// Shared by Q4_K and Q5_K, whose 12 scale bytes pack eight 6-bit (scale, min) pairs.
// ggml's get_scale_min_k4: the 6-bit (scale, min) pair j of the 12 bytes at `at`.
fn scale_min_k4(at: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(weights_u8(at + j) & 63u), f32(weights_u8(at + j + 4u) & 63u));
    }
    let b = weights_u8(at + j + 4u);
    let sc = (b & 15u) | ((weights_u8(at + j - 4u) >> 6u) << 4u);
    let m = (b >> 4u) | ((weights_u8(at + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}
