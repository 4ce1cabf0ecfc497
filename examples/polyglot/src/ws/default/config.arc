@aws
runtime python3.12
