# What amd-aiter 0.1.7.post2.dev18 does when `packaging` is not installed (it imports it without declaring it).
raise ModuleNotFoundError("No module named 'packaging'", name="packaging")
