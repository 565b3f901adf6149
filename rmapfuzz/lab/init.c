// SPDX-License-Identifier: GPL-2.0
/*
 * /init of an rmapfuzz lab guest (rmapfuzz/lab/initramfs.py packs it, built with gcc -static):
 * mounts what a reproducer reads (/proc, /sys, debugfs, devtmpfs on /dev), sets failslab up for
 * fail-nth on the anon_vma caches (the kernel command line marks them:
 * slub_debug=A,anon_vma,anon_vma_chain), loads the modules /modules/order lists (zram and what it
 * needs, for the oracle's swap; a module that fails to load is reported in one line and the rest
 * are skipped: the run goes on without swap), runs /repro (or the command in /cmdline:
 * environment lines, a line "--", one argument a line), prints its exit status between markers
 * the host looks for, then every file the command left in /out (an oracle's saved divergences),
 * and restarts the machine (QEMU runs with -no-reboot, so that ends it).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <errno.h>
#include <unistd.h>

static void put(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);

	if (fd >= 0) {
		if (write(fd, value, strlen(value)) < 0)
			printf("rmapfuzz-lab: cannot write %s\n", path);
		close(fd);
	}
}

/* each module /modules/order names (one file of /modules a line), in that order */
static void load_modules(void)
{
	static char text[4096];
	int fd = open("/modules/order", O_RDONLY);
	ssize_t len;
	char *name;

	if (fd < 0)
		return;
	len = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[len > 0 ? len : 0] = 0;
	for (name = strtok(text, "\n"); name; name = strtok(NULL, "\n")) {
		char path[512];
		int mfd, err = 0;

		snprintf(path, sizeof(path), "/modules/%s", name);
		mfd = open(path, O_RDONLY | O_CLOEXEC);
		if (mfd < 0 || syscall(SYS_finit_module, mfd, "", 0) != 0)
			err = errno;
		if (mfd >= 0)
			close(mfd);
		if (err && err != EEXIST) {
			printf("rmapfuzz-lab: module %s not loaded (%s): the guest has no swap\n", name, strerror(err));
			return;
		}
	}
}

/* /cmdline: KEY=VALUE lines, a line "--", then the argv, one per line */
static void run_cmdline(void)
{
	static char text[65536], *env[64], *argv[256];
	int fd = open("/cmdline", O_RDONLY), nenv = 0, nargv = 0, in_env = 1;
	ssize_t len;
	char *line;

	if (fd < 0) {
		char *def[] = { "/repro", NULL };

		execv("/repro", def);
		_exit(127);
	}
	len = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[len > 0 ? len : 0] = 0;
	for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (in_env && strcmp(line, "--") == 0) {
			in_env = 0;
			continue;
		}
		if (in_env && nenv < 63)
			env[nenv++] = line;
		else if (!in_env && nargv < 255)
			argv[nargv++] = line;
	}
	env[nenv] = NULL;
	argv[nargv] = NULL;
	if (nargv == 0)
		_exit(127);
	execve(argv[0], argv, env);
	_exit(127);
}

/* each file of /out, between markers, so the host can keep it */
static void send_out(void)
{
	DIR *dir = opendir("/out");
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir))) {
		char path[512], buf[4096];
		ssize_t n;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/out/%s", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		printf("rmapfuzz-lab: file %s\n", e->d_name);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, (size_t)n, stdout);
		printf("\nrmapfuzz-lab: end file\n");
		close(fd);
	}
	closedir(dir);
}

int main(void)
{
	int status = 0;
	pid_t child;

	mkdir("/proc", 0755);
	mkdir("/tmp", 01777);
	mkdir("/out", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	put("/sys/kernel/debug/failslab/cache-filter", "Y");
	put("/sys/kernel/debug/failslab/ignore-gfp-wait", "N");
	put("/sys/kernel/debug/failslab/verbose", "1");
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("rmapfuzz-lab: start\n");
	load_modules();
	child = fork();
	if (child == 0)
		run_cmdline();
	while (waitpid(child, &status, 0) < 0)
		;
	if (WIFEXITED(status))
		printf("rmapfuzz-lab: exit %d\n", WEXITSTATUS(status));
	else
		printf("rmapfuzz-lab: signal %d\n", WTERMSIG(status));
	send_out();
	sync();
	reboot(RB_AUTOBOOT);
	return 0;
}
