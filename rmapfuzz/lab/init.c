// SPDX-License-Identifier: GPL-2.0
/*
 * /init of an rmapfuzz lab guest (rmapfuzz/lab/initramfs.py packs it, built with gcc -static):
 * mounts what a reproducer reads (/proc, /sys, debugfs), sets failslab up for fail-nth on the
 * anon_vma caches (the kernel command line marks them: slub_debug=A,anon_vma,anon_vma_chain),
 * runs /repro, prints its exit status between markers the host looks for, and restarts the
 * machine (QEMU runs with -no-reboot, so that ends it).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

int main(void)
{
	int status = 0;
	pid_t child;

	mkdir("/proc", 0755);
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
	child = fork();
	if (child == 0) {
		char *argv[] = { "/repro", NULL };

		execv("/repro", argv);
		_exit(127);
	}
	while (waitpid(child, &status, 0) < 0)
		;
	if (WIFEXITED(status))
		printf("rmapfuzz-lab: exit %d\n", WEXITSTATUS(status));
	else
		printf("rmapfuzz-lab: signal %d\n", WTERMSIG(status));
	sync();
	reboot(RB_AUTOBOOT);
	return 0;
}
