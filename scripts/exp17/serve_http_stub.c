/*
 * serve_http_stub.c — stands in for tools/molt/serve_http.c where libmicrohttpd is not
 * installed (the GPU device image): scripts/exp17/gpu.sh compiles it into the build directory
 * as serve_http.o, so `molt` links without libmicrohttpd; `molt serve` then says so and fails.
 * Every other command is the same program.
 */
#include "serve.h"

#include <stdio.h>

int srv_http_start(srv *s) {
    (void)s;
    fprintf(stderr, "molt: error: serve: this molt was built without libmicrohttpd "
                    "(scripts/exp17/gpu.sh)\n");
    return 1;
}
int  srv_http_port(srv *s) { return (void)s, 0; }
void srv_http_drain(srv *s, double seconds) { (void)s, (void)seconds; }
void srv_http_stop(srv *s) { (void)s; }
