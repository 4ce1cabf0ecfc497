@aws
runtime nodejs20.x
