raise OSError("libamdhip64.so.7: cannot open shared object file: No such file or directory")
