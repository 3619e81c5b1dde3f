/** The colo version, shown by `colo --version`, in /status and in colo_build_info. */
export const VERSION = '0.1.0';
