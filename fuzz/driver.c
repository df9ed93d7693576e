/*
 * driver.c — a libFuzzer-compatible main for any compiler, used by `make test`:
 * replays every file of the corpus directory given, then runs -runs=N random
 * mutations (byte flips, truncations, splices, inserted digits) of corpus
 * entries through LLVMFuzzerTestOneInput. Deterministic (fixed seed). The real
 * coverage-guided libFuzzer build is `make fuzz`.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint8_t *d;
    size_t   n;
} blob;

static uint64_t rng = 0x1234567;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    long runs = 1000;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0)
            runs = atol(argv[i] + 6);
        else if (argv[i][0] != '-')
            dir = argv[i];
    }
    blob corpus[256];
    int nc = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && nc < 256) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            FILE *f = fopen(path, "rb");
            if (!f)
                continue;
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            if (n < 0 || n > (1 << 22)) {
                fclose(f);
                continue;
            }
            corpus[nc].d = malloc((size_t)n + 1);
            corpus[nc].n = fread(corpus[nc].d, 1, (size_t)n, f);
            fclose(f);
            LLVMFuzzerTestOneInput(corpus[nc].d, corpus[nc].n);
            nc++;
        }
        closedir(d);
    }
    if (nc == 0) {
        static uint8_t empty[1];
        corpus[0].d = malloc(1);
        corpus[0].d[0] = empty[0];
        corpus[0].n = 0;
        nc = 1;
    }
    for (long r = 0; r < runs; r++) {
        blob *src = &corpus[rnd() % (uint64_t)nc];
        size_t n = src->n + 16;
        uint8_t *buf = malloc(n);
        memcpy(buf, src->d, src->n);
        size_t len = src->n;
        int muts = 1 + (int)(rnd() % 8);
        for (int m = 0; m < muts; m++) {
            switch (rnd() % 6) {
            case 0: if (len) buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: if (len) buf[rnd() % len] = (uint8_t)rnd(); break;
            case 2: if (len) len = rnd() % len; break;
            case 3: if (len) buf[rnd() % len] = (uint8_t)"0123456789{}[]\":,-e."[rnd() % 20]; break;
            case 4: if (len < n) buf[len++] = (uint8_t)rnd(); break;
            case 5: if (len > 8) { size_t a = rnd() % len, b = rnd() % len, k = ((len - a) < (len - b) ? (len - a) : (len - b)); memmove(buf + a, buf + b, k / 2); } break;
            }
        }
        uint8_t *exact = malloc(len ? len : 1); // exact-size copy so ASan sees overreads
        memcpy(exact, buf, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        free(buf);
    }
    for (int i = 0; i < nc; i++)
        free(corpus[i].d);
    printf("fuzz driver: %d corpus entries, %ld mutated runs, no crash\n", nc, runs);
    return 0;
}
