// One byte of a select (select_common.wgsl): among the kept tokens whose rank key matches the
// bytes found so far, counts them and sums their masses per value of byte `pass_`. Each
// workgroup takes CHUNK tokens into its own histogram, then adds it to the global one.
// Does nothing once the select is done.

@group(0) @binding(0) var<storage, read> logits: array<f32>;            // (n)
@group(0) @binding(1) var<storage, read> largest: array<f32>;            // [0]: the largest logit
@group(0) @binding(2) var<storage, read> state: Select;
@group(0) @binding(3) var<storage, read_write> hist: array<atomic<u32>>; // (3, BINS)
@group(0) @binding(4) var<uniform> p: SelectParams;

override WG: u32 = 256u;    // BINS: thread t adds bin t
override CHUNK: u32 = 4096u;

var<workgroup> h_count: array<atomic<u32>, BINS>;
var<workgroup> h_lo: array<atomic<u32>, BINS>;
var<workgroup> h_hi: array<atomic<u32>, BINS>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let start = linear_group(wid, nwg) * CHUNK;
    if (state.done != 0u || start >= p.n) {
        return;
    }
    let end = min(start + CHUNK, p.n);
    let pass_ = state.pass_;
    let mask = prefix_mask(pass_);
    let prefix = vec2<u32>(state.prefix_hi, state.prefix_lo) & mask;
    let floor_hi = state.floor_hi;
    let floor_lo = state.floor_lo;
    let top = largest[0];
    for (var i = start + lid; i < end; i += WG) {
        let l = logits[i];
        let k = rank_key(l, i, p.digits);
        // l == l excludes NaN.
        if (l == l && key_at_least(k, floor_hi, floor_lo) && all((k & mask) == prefix)) {
            let b = key_byte(k, pass_);
            atomicAdd(&h_count[b], 1u);
            let m = fixed_mass(l, top, p.temperature);
            let old = atomicAdd(&h_lo[b], m);
            if (old + m < old) {
                atomicAdd(&h_hi[b], 1u);
            }
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&h_count[lid]);
    if (c != 0u) {
        atomicAdd(&hist[lid], c);
        let lo = atomicLoad(&h_lo[lid]);
        let old = atomicAdd(&hist[BINS + lid], lo);
        let carry = select(0u, 1u, old + lo < old);
        atomicAdd(&hist[2u * BINS + lid], atomicLoad(&h_hi[lid]) + carry);
    }
}
