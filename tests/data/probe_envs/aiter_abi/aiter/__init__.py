raise ImportError("/opt/aiter/aiter/jit/module_aiter_enum.so: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev")
