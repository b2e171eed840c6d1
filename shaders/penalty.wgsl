// Repetition penalty, in place on the logits: each token of `recent` (distinct ids, the last
// tokens of the context) has its logit divided by the penalty when positive, multiplied when
// not (llama.cpp's and Hugging Face's rule, once per distinct token). The host deduplicates, so
// no two threads touch the same logit. One workgroup.

struct Params {
    count: u32,     // ids in `recent` (<= WG)
    vocab: u32,
    penalty: f32,   // > 0; 1 is off
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>; // (vocab)
@group(0) @binding(1) var<storage, read> recent: array<u32>;       // (count) distinct token ids
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (lid >= p.count) {
        return;
    }
    let id = recent[lid];
    if (id >= p.vocab) {
        return;
    }
    let l = logits[id];
    logits[id] = select(l * p.penalty, l / p.penalty, l > 0.0);
}
