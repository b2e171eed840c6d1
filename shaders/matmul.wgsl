// Prefill product Y = X W^T for one piece of a weight matrix: X is n tokens x cols (f32), W rows x cols of any
// weight type, Y n x y_stride with this piece's rows at columns y_offset.. . Assembled as prelude + weights.wgsl +
// dequant_<type>.wgsl + this file. Each workgroup computes a tile of TILE_ROWS rows x TILE_TOKENS tokens, staging
// 32 columns at a time through workgroup memory: every weight is dequantized once per tile, not once per token.

struct Params {
    n: u32,           // tokens
    rows: u32,        // rows in this piece
    cols: u32,        // multiple of BLOCK_LEN
    row_stride: u32,  // bytes between rows in `weights` (a multiple of 4)
    y_offset: u32,    // column of Y for this piece's first row
    y_stride: u32,    // floats between tokens in Y
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;      // (rows, row_stride / 4) blocks of the type
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;      // (n, cols / 4)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;      // (n, y_stride)
@group(0) @binding(3) var<uniform> params: Params;

// 256 threads as 16 x 16; each computes 4 rows x 2 tokens. Sized so the tiles (12.4 KiB) fit WebGPU's
// default 16 KiB of workgroup memory.
const TILE_ROWS: u32 = 64u;
const TILE_TOKENS: u32 = 32u;
const TILE_K: u32 = 32u;
const PITCH: u32 = 33u; // TILE_K + 1: neighbouring rows land in different banks

var<workgroup> w_tile: array<f32, 2112>; // TILE_ROWS * PITCH
var<workgroup> x_tile: array<f32, 1056>; // TILE_TOKENS * PITCH

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.x * TILE_ROWS;
    let tok0 = wid.y * TILE_TOKENS;
    let tr = lid % 16u;
    let tt = lid / 16u;

    // Loader roles: one 8-weight group of one row, and one vec4 of one token, per thread.
    let load_row = row0 + lid / 4u;
    let load_group = lid % 4u;
    let load_tok = tok0 + lid / 8u;
    let load_c4 = lid % 8u;

    var acc: array<array<f32, 2>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = array<f32, 2>(0.0, 0.0);
    }

    for (var k0 = 0u; k0 < params.cols; k0 += TILE_K) {
        var w = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        if (load_row < params.rows) {
            w = dequant8(load_row * params.row_stride, k0 / 8u + load_group);
        }
        let wbase = (lid / 4u) * PITCH + load_group * 8u;
        for (var i = 0u; i < 8u; i++) {
            w_tile[wbase + i] = w[i];
        }
        if (lid < TILE_TOKENS * 8u) {
            var v = vec4<f32>(0.0);
            if (load_tok < params.n) {
                v = x[load_tok * (params.cols / 4u) + k0 / 4u + load_c4];
            }
            let xbase = (lid / 8u) * PITCH + load_c4 * 4u;
            x_tile[xbase] = v.x;
            x_tile[xbase + 1u] = v.y;
            x_tile[xbase + 2u] = v.z;
            x_tile[xbase + 3u] = v.w;
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            let x0 = x_tile[tt * PITCH + k];
            let x1 = x_tile[(tt + 16u) * PITCH + k];
            for (var i = 0u; i < 4u; i++) {
                let wv = w_tile[(tr + 16u * i) * PITCH + k];
                acc[i][0] += wv * x0;
                acc[i][1] += wv * x1;
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + tr + 16u * i;
        for (var j = 0u; j < 2u; j++) {
            let t = tok0 + tt + 16u * j;
            if (r < params.rows && t < params.n) {
                y[t * params.y_stride + params.y_offset + r] = acc[i][j];
            }
        }
    }
}
