/* A minimal shim over ISA-L's streaming gzip inflate, so the Rust side never mirrors `struct inflate_state`
 * (its layout depends on the ISA-L version). One state per stream; multi-member gzip is handled by
 * `imgcore_isal_reset` after a member finishes. */
#include <stdint.h>
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

void *imgcore_isal_new(void) {
    struct inflate_state *s = malloc(sizeof *s);
    if (s) {
        isal_inflate_init(s);
        s->crc_flag = ISAL_GZIP;
    }
    return s;
}

void imgcore_isal_reset(void *p) {
    struct inflate_state *s = p;
    isal_inflate_reset(s);
    s->crc_flag = ISAL_GZIP;
}

void imgcore_isal_free(void *p) { free(p); }

/* Returns ISA-L's status; *finished is 1 once the current gzip member (trailer included) is done. */
int imgcore_isal_inflate(void *p, const uint8_t *in, uint32_t in_len, uint8_t *out, uint32_t out_len,
                         uint32_t *consumed, uint32_t *produced, int *finished) {
    struct inflate_state *s = p;
    s->next_in = (uint8_t *)in;
    s->avail_in = in_len;
    s->next_out = out;
    s->avail_out = out_len;
    int ret = isal_inflate(s);
    *consumed = in_len - s->avail_in;
    *produced = out_len - s->avail_out;
    *finished = s->block_state == ISAL_BLOCK_FINISH;
    return ret;
}
