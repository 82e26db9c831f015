/*
 * The pod sandbox's pause process for BizCloud's local cluster (image bizcloud.local/pause:3.10).
 *
 * It holds the pod's namespaces open and, as PID 1 of a pod that shares its PID namespace, reaps
 * orphaned children. It sleeps in pause() forever and exits 0 on SIGINT or SIGTERM. Built with
 * `gcc -static -Os` by bizcloud/cluster/images.py so the image is FROM scratch and nothing is pulled.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int signo) {
    (void)signo;
    _exit(0);
}

static void on_child(int signo) {
    int saved = errno;
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int install(int signo, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = signo == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : SA_RESTART;
    return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("bizcloud-pause 3.10");
        return 0;
    }
    if (getpid() != 1) {
        fputs("warning: pause should be the first process in its PID namespace\n", stderr);
    }
    if (install(SIGINT, on_stop) < 0 || install(SIGTERM, on_stop) < 0 || install(SIGCHLD, on_child) < 0) {
        perror("sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
    /* not reached */
    return 42;
}
