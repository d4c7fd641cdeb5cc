/* Escape probes for tests/test_containment.py. Built static at test time and COPYed
 * into the image. Each probe tries one way out of the sandbox and prints one line per
 * attempt, "<probe>: ok" or "<probe>: <ERRNO name>", so the test can tell a refused
 * attempt from one that never ran. Probes only read and report: the only writes are
 * appends to the canary path the test made, and files in the step's own rootfs. Where a
 * call would change something if it were allowed, its arguments make it fail harmlessly
 * even then (a module name that does not exist, a key type that does not exist ...), so
 * the only difference between contained and not is the errno. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static int report(const char *what, long rc) {
    if (rc < 0)
        printf("%s: %s\n", what, strerrorname_np(errno));
    else
        printf("%s: ok\n", what);
    fflush(stdout);
    return rc < 0;
}

/* Open read-only and report how many bytes could be read (the bytes are never shown). */
static void probe_read(const char *path) {
    char label[4200], buf[4096];
    snprintf(label, sizeof label, "read %s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report(label, -1);
        return;
    }
    long total = 0, n;
    while ((n = read(fd, buf, sizeof buf)) > 0 && total < (1 << 20))
        total += n;
    if (n < 0) {
        report(label, -1);
    } else {
        printf("%s: %ld bytes\n", label, total);
        fflush(stdout);
    }
    close(fd);
}

/* Open for writing and close without writing a byte: the permission is the test. */
static void probe_openw(const char *path) {
    char label[4200];
    snprintf(label, sizeof label, "openw %s", path);
    int fd = open(path, O_WRONLY);
    report(label, fd);
    if (fd >= 0)
        close(fd);
}

static void append_canary(const char *label, const char *path) {
    int fd = open(path, O_WRONLY | O_APPEND);
    if (report(label, fd) == 0) {
        if (write(fd, "escaped\n", 8) != 8)
            perror("write");
        close(fd);
    }
}

/* The classic chroot escape: keep a directory fd, chroot deeper, fchdir back out, climb. */
static void chroot_escape(const char *secret, const char *canary) {
    mkdir("/tmp/jail", 0755);
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    report("chroot-escape open /", fd);
    report("chroot-escape chroot", chroot("/tmp/jail"));
    report("chroot-escape fchdir", fchdir(fd));
    for (int i = 0; i < 256; i++)
        if (chdir("..") != 0)
            break;
    report("chroot-escape chroot .", chroot("."));
    probe_read(secret);
    append_canary("chroot-escape canary", canary);
    struct stat st;
    report("chroot-escape stat /proc/1/root", stat("/proc/1/root/", &st));
}

static void list_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        report("fds", -1);
        return;
    }
    int self = dirfd(d);
    printf("fds:");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        printf(" %s", e->d_name);
    }
    printf("\n");
    closedir(d);
}

static void status_lines(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[512];
    printf("euid: %d\n", (int)geteuid());
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) ||
            !strncmp(line, "Seccomp:", 8))
            fputs(line, stdout);
    if (f)
        fclose(f);
    fflush(stdout);
}

static int child_exit(void *arg) {
    (void)arg;
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: escape PROBE [ARGS]\n");
        return 2;
    }
    const char *p = argv[1];
    char **a = argv + 2;
    int n = argc - 2;
    if (!strcmp(p, "read")) {
        for (int i = 0; i < n; i++)
            probe_read(a[i]);
    } else if (!strcmp(p, "openw")) {
        for (int i = 0; i < n; i++)
            probe_openw(a[i]);
    } else if (!strcmp(p, "append") && n == 1) {
        append_canary("append", a[0]);
    } else if (!strcmp(p, "chroot-escape") && n == 2) {
        chroot_escape(a[0], a[1]);
    } else if (!strcmp(p, "mknod") && n == 4) {
        mode_t type = a[1][0] == 'b' ? S_IFBLK : S_IFCHR;
        char label[4200];
        snprintf(label, sizeof label, "mknod %s", a[0]);
        report(label, mknod(a[0], type | 0600, makedev(atoi(a[2]), atoi(a[3]))));
    } else if (!strcmp(p, "mount-tmpfs") && n == 1) {
        report("mount-tmpfs", mount("none", a[0], "tmpfs", 0, NULL));
    } else if (!strcmp(p, "mount-proc") && n == 1) {
        report("mount-proc", mount("proc", a[0], "proc", 0, NULL));
    } else if (!strcmp(p, "bind") && n == 2) {
        report("bind", mount(a[0], a[1], NULL, MS_BIND | MS_REC, NULL));
    } else if (!strcmp(p, "remount-rw")) {
        for (int i = 0; i < n; i++) {
            char label[4200];
            snprintf(label, sizeof label, "remount-rw %s", a[i]);
            report(label, mount(NULL, a[i], NULL, MS_REMOUNT | MS_BIND, NULL));
        }
    } else if (!strcmp(p, "umount")) {
        for (int i = 0; i < n; i++) {
            char label[4200];
            snprintf(label, sizeof label, "umount %s", a[i]);
            report(label, umount2(a[i], MNT_DETACH));
        }
    } else if (!strcmp(p, "pivot-root")) {
        report("pivot-root", syscall(SYS_pivot_root, ".", "."));
    } else if (!strcmp(p, "fsopen")) {
        report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    } else if (!strcmp(p, "open-tree")) {
        report("open-tree", syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    } else if (!strcmp(p, "unshare")) {
        report("unshare-user", unshare(CLONE_NEWUSER));
        report("unshare-mount", unshare(CLONE_NEWNS));
    } else if (!strcmp(p, "clone-newuser")) {
        static char stack[65536];
        long pid = clone(child_exit, stack + sizeof stack, CLONE_NEWUSER | SIGCHLD, NULL);
        if (report("clone-newuser", pid) == 0)
            waitpid(pid, NULL, 0);
    } else if (!strcmp(p, "setns") && n == 1) {
        int fd = open(a[0], O_RDONLY);
        if (report("setns open", fd) == 0)
            report("setns", setns(fd, 0));
    } else if (!strcmp(p, "kill") && n == 2) {
        char label[64];
        snprintf(label, sizeof label, "kill %s %s", a[0], a[1]);
        report(label, kill(atoi(a[0]), atoi(a[1])));
    } else if (!strcmp(p, "ptrace") && n == 1) {
        pid_t pid = atoi(a[0]);
        if (report("ptrace attach", ptrace(PTRACE_ATTACH, pid, NULL, NULL)) == 0) {
            waitpid(pid, NULL, __WALL);
            ptrace(PTRACE_DETACH, pid, NULL, NULL);
        }
        char buf[16];
        struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
        report("process_vm_readv", process_vm_readv(pid, &local, 1, &remote, 1, 0));
    } else if (!strcmp(p, "module")) {
        int fd = open("/dev/null", O_RDONLY);
        report("finit_module", syscall(SYS_finit_module, fd, "", 0));
        report("init_module", syscall(SYS_init_module, NULL, 0, ""));
        report("delete_module", syscall(SYS_delete_module, "pipeline_no_such_module", O_NONBLOCK));
    } else if (!strcmp(p, "syscalls")) {
        report("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0));
        report("add_key", syscall(SYS_add_key, "pipeline-no-such-type", "t", "x", 1, -3));
        report("bpf", syscall(SYS_bpf, 0, NULL, 0));
        report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
        report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
        report("userfaultfd", syscall(SYS_userfaultfd, 0));
        report("syslog", klogctl(10 /* SIZE_BUFFER */, NULL, 0));
        report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, O_RDONLY));
        report("tiocsti", ioctl(0, TIOCSTI, "x"));
        report("swapoff", swapoff("/nonexistent"));
        report("acct", acct("/nonexistent"));
    } else if (!strcmp(p, "abstract") && n == 1) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        size_t len = strlen(a[0]);
        memcpy(addr.sun_path + 1, a[0], len);
        report("abstract connect",
               connect(s, (struct sockaddr *)&addr, offsetof(struct sockaddr_un, sun_path) + 1 + len));
    } else if (!strcmp(p, "fds")) {
        list_fds();
    } else if (!strcmp(p, "status")) {
        status_lines();
    } else if (!strcmp(p, "stat") && n == 1) {
        struct stat st;
        if (report("stat", stat(a[0], &st)) == 0)
            printf("stat %s: dev=%lu ino=%lu rdev=%u:%u\n", a[0], (unsigned long)st.st_dev,
                   (unsigned long)st.st_ino, major(st.st_rdev), minor(st.st_rdev));
    } else {
        fprintf(stderr, "escape: unknown probe %s\n", p);
        return 2;
    }
    return 0;
}
