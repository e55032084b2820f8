// The floor under a cold build: creates the folders and files a build wrote, with the same
// sizes, and does nothing else (no reading, no rendering). run.sh times it beside sitegen
// and Hugo to show how much of a build's wall time the kernel's file creation alone takes.
//
// usage: create_files LIST OUT THREADS
// LIST has a line "PATH SIZE" per file and "PATH -1" per folder, paths relative to OUT,
// sorted (a folder before what it holds). THREADS workers take the lines in chunks of 16:
// mkdir for a folder, open(O_CREAT|O_TRUNC) + one write + close for a file, as a build
// would; a file whose folder another worker has not made yet makes it (mkdir -p).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char **paths;
static long *sizes;
static long count;
static char *bytes;
static const char *out;
static long next_line;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void make_parents(char *full) {
    for (char *p = full + strlen(out) + 1; (p = strchr(p, '/')); p++) {
        *p = 0;
        mkdir(full, 0755);
        *p = '/';
    }
}

static void *work(void *unused) {
    (void)unused;
    char full[4096];
    for (;;) {
        pthread_mutex_lock(&lock);
        long first = next_line;
        next_line += 16;
        pthread_mutex_unlock(&lock);
        if (first >= count) return NULL;
        for (long i = first; i < first + 16 && i < count; i++) {
            snprintf(full, sizeof full, "%s/%s", out, paths[i]);
            if (sizes[i] < 0) {
                if (mkdir(full, 0755) != 0 && errno == ENOENT) {
                    make_parents(full);
                    mkdir(full, 0755);
                }
                continue;
            }
            int fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0 && errno == ENOENT) {
                make_parents(full);
                fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            }
            if (fd < 0 || write(fd, bytes, sizes[i]) != sizes[i]) {
                perror(full);
                exit(1);
            }
            close(fd);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: create_files LIST OUT THREADS\n");
        return 2;
    }
    FILE *list = fopen(argv[1], "r");
    if (!list) {
        perror(argv[1]);
        return 1;
    }
    out = argv[2];
    int threads = atoi(argv[3]);
    if (threads < 1 || threads > 64) threads = 2;
    long capacity = 1 << 16, largest = 0;
    paths = malloc(capacity * sizeof *paths);
    sizes = malloc(capacity * sizeof *sizes);
    char line[4096];
    while (fgets(line, sizeof line, list)) {
        char *space = strrchr(line, ' ');
        if (!space) continue;
        *space = 0;
        if (count == capacity) {
            capacity *= 2;
            paths = realloc(paths, capacity * sizeof *paths);
            sizes = realloc(sizes, capacity * sizeof *sizes);
        }
        paths[count] = strdup(line);
        sizes[count] = atol(space + 1);
        if (sizes[count] > largest) largest = sizes[count];
        count++;
    }
    bytes = malloc(largest + 1);
    memset(bytes, 'x', largest + 1);
    mkdir(out, 0755);
    pthread_t workers[64];
    for (int i = 0; i < threads; i++) pthread_create(&workers[i], NULL, work, NULL);
    for (int i = 0; i < threads; i++) pthread_join(workers[i], NULL);
    return 0;
}
