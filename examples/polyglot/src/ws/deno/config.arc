@aws
runtime deno
